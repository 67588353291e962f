"""``.. fastconv-cli::``: the ``fastconv`` command's reference, rendered from its argparse parser.

The parser (:func:`fastconv.cli.build_parser`) is the one source of every option, its help
and its default: the reference cannot drift from ``fastconv COMMAND --help``. Each
subcommand becomes a rubric with its usage line, its description and one definition-list
item per option, worded exactly as ``--help`` words it (defaults included).
"""
import argparse
import os

from docutils import nodes
from docutils.parsers.rst import Directive

# argparse wraps usage lines to the terminal's width; the reference is built anywhere.
_COLUMNS = "88"


def _subcommands(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            return [(name, sub, helps.get(name)) for name, sub in action.choices.items()]
    return []


def _options(parser):
    """A definition list of the parser's arguments, as its help formatter words them."""
    formatter = parser._get_formatter()
    items = nodes.definition_list()
    for action in parser._actions:
        # The subcommands get their own rubrics below.
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
            continue
        term = nodes.term()
        term += nodes.literal(text=formatter._format_action_invocation(action))
        body = nodes.definition()
        body += nodes.paragraph(text=formatter._expand_help(action) if action.help else "")
        items += nodes.definition_list_item("", term, body)
    return items


def _command(name, parser, summary):
    out = [nodes.rubric(text=name)]
    if summary:
        out.append(nodes.paragraph(text=summary[0].upper() + summary[1:] + "."))
    usage = parser.format_usage().strip()
    out.append(nodes.literal_block(usage, usage))
    if parser.description:
        out.append(nodes.paragraph(text=parser.description))
    out.append(_options(parser))
    return out


class FastconvCli(Directive):
    """Render ``fastconv --help`` and every subcommand's ``--help``."""

    has_content = False

    def run(self):
        from fastconv.cli import build_parser

        before = os.environ.get("COLUMNS")
        os.environ["COLUMNS"] = _COLUMNS
        try:
            parser = build_parser()
            out = _command("fastconv", parser, None)
            for name, sub, summary in _subcommands(parser):
                out += _command(f"fastconv {name}", sub, summary)
            return out
        finally:
            if before is None:
                os.environ.pop("COLUMNS", None)
            else:
                os.environ["COLUMNS"] = before


def setup(app):
    app.add_directive("fastconv-cli", FastconvCli)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
