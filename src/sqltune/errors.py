"""The errors a user can fix. The CLI prints each as one line and exits 2, with no traceback;
anything else (an ImportError, a FileNotFoundError from our own code) is a bug and keeps its
traceback.

    UserError
    ├── ConfigError          the experiment YAML, an override or a command-line flag
    ├── DataError            a data file or dataset: names the file and the row
    ├── CheckpointNotFound   --checkpoint names no folder, known UUID or cluster checkpoint
    │   └── CheckpointDamaged    it names one that is incomplete or damaged (its manifest says which file)
    ├── CheckpointStoreFailed    a checkpoint could not be written or stored (disk full, permission, I/O)
    ├── RunFolderBusy        another process trains in the same run folder
    ├── SearchRunning        another `sqltune search` holds the search folder
    └── MasterUnreachable    a Determined master that can't be reached, or refuses us
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; the message says what and where."""


class ConfigError(UserError, ValueError):
    """Every problem found in a config, one per line."""

    def __init__(self, problems: list[str], source: str = "config"):
        self.problems = problems
        if len(problems) == 1:  # one mistake, one line
            super().__init__(problems[0] if source == "config" else f"{source}: {problems[0]}")
        else:
            super().__init__(f"{source}: {len(problems)} problem(s)\n" + "\n".join(f"  - {p}" for p in problems))


class DataError(UserError, ValueError):
    """A data problem a user can fix; the message names the file and row."""


class CheckpointNotFound(UserError, FileNotFoundError):
    """`--checkpoint` names nothing this machine (or the cluster at DET_MASTER) holds."""


class CheckpointDamaged(CheckpointNotFound):
    """A checkpoint whose manifest is missing, or whose files don't match it."""


class CheckpointStoreFailed(UserError, OSError):
    """Saving or storing a checkpoint failed; what was partly written is removed again."""


class RunFolderBusy(UserError):
    """Another process holds the run folder's lock (it is training there)."""


class SearchRunning(UserError):
    """Another `sqltune search` runs in the same search folder."""


class MasterUnreachable(UserError):
    """A Determined master could not be reached, or refused the request (log in first)."""
