"""Rule params as `snakemake --report` shows them: escaped, so a config string cannot put live HTML in the report.

The report writes each result's job params, `str(param)`, into a JSON literal inside a <script> block of
report.html, unescaped: a trigger holding `</script><img src=x onerror=...>` would end the block and run.
The params of the rules whose outputs are in the report are wrapped (Snakefile) so that their `str` is
HTML-escaped. Their `repr`, which Snakemake stores to see whether a param changed, is the plain value's
(no rerun), and Snakemake serialises them for a script as the plain value (`__reduce__`), so a rule script gets an ordinary dict, list or str.
"""

from __future__ import annotations

import functools
import html


def _escape(text: str) -> str:
    return html.escape(text, quote=False)  # & < >: no tag, comment or end of the <script> block can start


def _escaped_container(plain: type) -> type:
    """A subclass of `plain` whose str is the escaped repr; repr and serialised form are the plain value's."""
    return type(f"_Escaped{plain.__name__.title()}", (plain,), {
        "__repr__": plain.__repr__,
        "__str__": lambda self: _escape(plain.__repr__(self)),
        "__reduce__": lambda self: (plain, (plain(self),)),
    })


_Dict, _List, _Tuple = (_escaped_container(plain) for plain in (dict, list, tuple))


class _Str(str):
    __repr__ = str.__repr__

    def __format__(self, spec):  # the report formats params with f"{name}={value}"
        return _escape(format(str.__str__(self), spec))

    def __reduce__(self):
        return str, (str.__str__(self),)


_WRAPPERS = ((dict, _Dict), (list, _List), (tuple, _Tuple), (str, _Str))


def escaped(value):
    """`value` (an evaluated param) with its report text HTML-escaped; equal, and of equal repr, to it."""
    for plain, wrapper in _WRAPPERS:
        if isinstance(value, plain) and not isinstance(value, wrapper):
            return wrapper(value)
    return value


def escaped_param(value):
    """A rule param (a value or a function of the wildcards) whose value the report shows escaped. A value
    becomes a function of the wildcards: a literal param is not wildcard-expanded any more, which none of the
    wrapped params relies on (they hold config values and lists of names)."""
    if callable(value):
        @functools.wraps(value)  # Snakemake reads the signature (wildcards, input, ...) through __wrapped__
        def param(*args, **kwargs):
            return escaped(value(*args, **kwargs))
        return param
    return lambda wildcards: escaped(value)


def escape_report_params(rules) -> list[str]:
    """Wrap every param of every rule with an output marked for the report; the names of those rules."""
    from snakemake.io import is_flagged  # snakemake's internals: only the Snakefile, which runs under it, calls this

    wrapped = []
    for rule in rules:
        if not any(is_flagged(item, "report") for item in rule.output):
            continue
        params = rule.params
        for i, item in enumerate(params):
            params[i] = escaped_param(item)
        # a named param is read through its attribute (Namedlist._allitems), which still holds the old item
        for name, (start, end) in params._names.items():
            setattr(params, name, params[start] if end is None else type(params)(toclone=params[start:end]))
        wrapped.append(rule.name)
    return wrapped
