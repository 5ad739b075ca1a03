"""Console tables of the command line (rich)."""

from __future__ import annotations

__all__ = ["print_table"]


def print_table(title: str, rows: list[dict]) -> None:
    """Print ``rows`` (dicts with the same keys) as a table; one row prints as name/value pairs."""
    from rich.console import Console
    from rich.table import Table

    def fmt(v) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    table = Table(title=title)
    if len(rows) == 1:  # one row: a (name, value) column pair, so no header is ever cut short
        table.add_column("")
        table.add_column("value", justify="right")
        for k, v in rows[0].items():
            table.add_row(k, fmt(v))
    else:
        for c in rows[0]:
            table.add_column(c, justify="left" if c == "sampler" else "right")
        for r in rows:
            table.add_row(*[fmt(v) for v in r.values()])
    Console(width=160).print(table)
