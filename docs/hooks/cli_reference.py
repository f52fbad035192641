"""MkDocs hook: the CLI reference, generated from the Typer app at build time.

`on_page_markdown` replaces the marker ``<!-- cli-reference -->`` (in docs/reference/cli.md)
with `cli_reference()`: every command of ``sweeper.cli.app``, walked through Typer's command
tree, with its usage line, its help text (``Example:`` paragraphs as shell blocks) and a table
of its arguments and options: names, value, default, and help with the allowed range. A command
or option added, renamed or removed shows up in the next build; nothing here is copied by hand.

The text comes from the parameters' own help records (what ``--help`` prints, without its line
wrapping), so it does not depend on the terminal width, colours or the environment.
"""

from __future__ import annotations

import re
from typing import Any

MARKER = "<!-- cli-reference -->"

__all__ = ["MARKER", "cli_reference", "command_names", "on_page_markdown"]


def on_page_markdown(markdown: str, page: Any = None, **kwargs: Any) -> str:
    """MkDocs event: put the generated reference where the page has the marker."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, cli_reference())


def _root(app: Any = None) -> tuple[Any, Any]:
    """The app's top command (a group) and its context, as ``sweeper`` on a shell line."""
    import typer

    if app is None:
        from sweeper.cli import app
    group = typer.main.get_command(app)
    return group, group.context_class(group, info_name="sweeper")


def _walk(cmd: Any, ctx: Any) -> list[tuple[Any, Any]]:
    """`cmd` and every visible command below it, depth first, subcommands by name."""
    found = [(cmd, ctx)]
    if hasattr(cmd, "list_commands"):
        for name in sorted(cmd.list_commands(ctx)):
            sub = cmd.get_command(ctx, name)
            if sub is None or getattr(sub, "hidden", False):
                continue
            found += _walk(sub, sub.context_class(sub, info_name=name, parent=ctx))
    return found


def command_names(app: Any = None) -> list[str]:
    """Every command's full name, e.g. ``sweeper run``, ``sweeper data synth-ecg``."""
    group, ctx = _root(app)
    return [c.command_path for _, c in _walk(group, ctx)[1:]]


def cli_reference(app: Any = None) -> str:
    """The reference of every command of `app` (default: ``sweeper.cli.app``) as Markdown."""
    group, root_ctx = _root(app)
    commands = _walk(group, root_ctx)
    lines = [*_help_blocks(group.help or ""), "", "| command | what it does |", "|---|---|"]
    for cmd, ctx in commands[1:]:
        lines.append(f"| [`{ctx.command_path}`](#{_anchor(ctx)}) | {_cell(_summary(cmd))} |")
    lines.append("")
    for cmd, ctx in commands[1:]:
        lines += _command(cmd, ctx)
    return "\n".join(lines).rstrip() + "\n"


def _command(cmd: Any, ctx: Any) -> list[str]:
    depth = ctx.command_path.count(" ") + 1  # sweeper run: ##; sweeper data synth-ecg: ###
    lines = [f"{'#' * depth} `{ctx.command_path}` {{#{_anchor(ctx)}}}", ""]
    if getattr(cmd, "deprecated", False):
        lines += ["*Deprecated.*", ""]
    pieces = " ".join(cmd.collect_usage_pieces(ctx))
    lines += ["```text", f"{ctx.command_path} {pieces}".rstrip(), "```", ""]
    lines += [*_help_blocks(cmd.help or ""), ""]
    rows = [row for p in cmd.get_params(ctx) if (row := _param_row(p, ctx)) is not None]
    if rows:
        lines += ["| argument / option | value | default | description |", "|---|---|---|---|"]
        lines += rows
        lines.append("")
    if hasattr(cmd, "list_commands"):
        subs = [cmd.get_command(ctx, n) for n in sorted(cmd.list_commands(ctx))]
        lines.append(
            "Commands: "
            + ", ".join(
                f"[`{ctx.command_path} {s.name}`](#{_anchor(ctx, s.name)})"
                for s in subs
                if s is not None and not getattr(s, "hidden", False)
            )
            + "."
        )
        lines.append("")
    return lines


def _param_row(param: Any, ctx: Any) -> str | None:
    """One table row: names, value (metavar), default, help with the allowed range."""
    if getattr(param, "hidden", False) or param.name == "help":
        return None
    record = param.get_help_record(ctx)
    first, text = record if record else (param.name, "")
    if param.param_type_name == "argument":
        name, _, metavar = first.partition(" ")
        names = f"`{name}`"
    else:
        # "-f, --format <str>", "--ci / --no-ci", "--checkpoint-every SECONDS"
        tokens = first.split(" ")
        flags = [t.rstrip(",") for t in tokens if t.startswith("-") or t == "/"]
        metavar = " ".join(t for t in tokens if not (t.startswith("-") or t == "/"))
        sides = " ".join(flags).split(" / ")
        names = " / ".join(", ".join(f"`{o}`" for o in side.split()) for side in sides)
    help_text = getattr(param, "help", None) or ""
    extras: list[str] = []
    match = re.search(r"\s*\[([^\[\]]*)\]$", text)
    if match and text[: match.start()].strip() == help_text.strip():
        extras = [e.strip() for e in match.group(1).split(";") if e.strip()]
    elif text.strip() and not help_text:
        help_text = text
    default = ""
    notes: list[str] = []
    for extra in extras:
        key, sep, value = extra.partition(": ")
        if key == "default" and sep:
            default = f"`{value}`"
        elif extra == "required":
            default = "required"
        else:
            notes.append(f"`{extra}`")
    description = _cell(_inline(" ".join(help_text.split())))
    if notes:
        description += (" " if description else "") + "(" + ", ".join(notes) + ")"
    return f"| {names} | {_cell(_escape(metavar))} | {default} | {description} |"


def _help_blocks(help_text: str) -> list[str]:
    """A command's help as Markdown: paragraphs, and ``Example: cmd`` as a shell block."""
    lines: list[str] = []
    examples: list[str] = []
    for raw in re.split(r"\n\s*\n", help_text.replace("\b", "").strip()):
        paragraph = " ".join(raw.split())
        if not paragraph:
            continue
        if paragraph.startswith("Example: "):
            examples.append(paragraph.removeprefix("Example: "))
            continue
        lines += _examples(examples) + [_inline(paragraph), ""]
        examples = []
    lines += _examples(examples)
    return lines[:-1] if lines and lines[-1] == "" else lines


def _examples(examples: list[str]) -> list[str]:
    if not examples:
        return []
    label = "Example:" if len(examples) == 1 else "Examples:"
    return [label, "", "```bash", *examples, "```", ""]


def _summary(cmd: Any) -> str:
    """The first paragraph of a command's help, on one line."""
    first = re.split(r"\n\s*\n", (cmd.help or "").replace("\b", "").strip())[0]
    return _inline(" ".join(first.split()))


def _inline(text: str) -> str:
    """Plain help text as Markdown: code spans kept (RST's ``x`` too), the rest escaped."""
    text = re.sub(r"``([^`]+)``", r"`\1`", text)
    parts = re.split(r"(`[^`]+`)", text)
    return "".join(p if p.startswith("`") else _escape(p) for p in parts)


def _escape(text: str) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"([\\*_\[\]#])", r"\\\1", text)


def _cell(text: str) -> str:
    """Text safe inside a table cell (a pipe would end the cell)."""
    return text.replace("|", "\\|")


def _anchor(ctx: Any, sub: str | None = None) -> str:
    path = ctx.command_path + (f" {sub}" if sub else "")
    return re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-")
