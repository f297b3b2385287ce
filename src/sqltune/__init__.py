"""sqltune: fine-tune causal language models to write SQL, on Determined or on one machine."""

__version__ = "0.1.0"
