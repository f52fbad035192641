"""Running studies: options, the batching decision, backends, workers, and the run itself.

`sweeper.launch.run` runs a study and returns values (`start`, `execute`, `summarize`) and
joins a shared database's studies from this host (`work`). Nothing here prints: `sweeper.cli`
and the Python API (`sweeper.run`) are two thin faces of it. Only the options load with the
package, so the CLI's `--help` stays fast.
"""

from __future__ import annotations

from sweeper.launch.options import DEFAULT_GROUP_SIZE, MODES, RunOptions, WorkerOptions

__all__ = ["DEFAULT_GROUP_SIZE", "MODES", "RunOptions", "WorkerOptions"]
