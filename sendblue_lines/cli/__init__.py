"""The `sendblue-lines` command: limits, plan, preview, provision, history, reconcile.

Also `settle`, `sandbox` and `demo`. `provision`, `history`, `reconcile` and
`settle` use the purchase journal (`_journal` says which: ``--journal``, else
`SENDBLUE_LINES_JOURNAL`, else ``$XDG_STATE_HOME/sendblue-lines/``; or none
with ``--no-journal``); `provision` first settles what a dead process left
open. ``provision --key K --count N`` buys toward a key's total N (`_keys`).

A thin layer over the public API. Every failure, of any kind, is printed as
one sentence (what happened, what to do) with a documented exit code, never
a traceback (`-vv` adds it) and never a credential. SIGTERM is read as
Ctrl-C at every step.

Exit codes:

- 0: every requested line was bought (or the command did what it was asked);
- 1: some lines were bought, some were not;
- 2: a usage or configuration error, a journal that cannot be opened
  (nothing was sent), or nothing was bought;
- 3: an outcome is unknown, or a provisioning failure left a subscription
  without a line: a human must check the account;
- 4: the command could not finish for a reason outside Sendblue's answers:
  its output could not be written (stdout closed, e.g. by `head`), or an
  unexpected error; nothing more was sent;
- 130: interrupted (Ctrl-C or SIGTERM); confirms already sent were waited
  for and what they bought was printed.

The package: `_main` (the parser, `main()` and its one dispatch), `_commands`
(one handler per subcommand), `_buying` (the question, the batch under Ctrl-C,
the summary), `_keys` (a key's total and what a keyed run says), `_settle`
(settling an unknown purchase by hand), `_render` (sentences, tables, JSON,
exit codes), `_terminal` (streams that may break, the progress line,
signals), `_journal` (which journal, and opening it), `_demo` (the
walk-through against an embedded sandbox) and `_demo_crash` (its steps with
a child process killed mid-confirm).
"""

from __future__ import annotations

from ._main import build_parser, main
from ._render import explain, limits_table, outcome_json

__all__ = ["build_parser", "explain", "limits_table", "main", "outcome_json"]
