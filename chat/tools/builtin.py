"""The built-in tools: ``calculator`` (arithmetic with simpleeval, never ``eval``) and ``current_time`` (zoneinfo).

Each is a `Tool` with policy ``auto`` plus a synchronous function ``(arguments: dict) -> ToolOutput`` that reports
bad input as ``ToolOutput(is_error=True)`` so the model can retry; `Toolbox.call` runs it in a worker thread.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import simpleeval

from .base import Policy, Tool, ToolOutput

#: Longest expression the calculator takes, in characters.
MAX_EXPRESSION_LENGTH = 500
#: Largest exponent (absolute value) of ``**``.
MAX_EXPONENT = 1000
#: Largest base (absolute value) of ``**`` when the exponent is more than 1: keeps results to a few thousand digits.
MAX_POWER_BASE = 10**100

CALCULATOR = Tool(
    name="calculator",
    description=(
        "Evaluate an arithmetic expression exactly and return its value. Supports numbers, + - * / // % ** "
        "(exponent at most 1000), parentheses, unary minus, the constants pi and e, and the functions sqrt, sin, "
        "cos, tan (radians), log (natural; log(x, base) for another base), log10, exp, abs, round(x[, digits]), "
        "floor and ceil. Example: '(2 + 3) * sqrt(16) / 7'."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "expression": {
                "type": "string",
                "description": "The expression, e.g. '2 ** 10 - 1' or 'round(sin(pi / 6), 4)'.",
                "maxLength": MAX_EXPRESSION_LENGTH,
            }
        },
        "required": ["expression"],
        "additionalProperties": False,
    },
    source="builtin",
    policy=Policy.auto,
    original_name="calculator",
)

CURRENT_TIME = Tool(
    name="current_time",
    description=(
        "Get the current date, time and weekday in a time zone. Returns ISO 8601 with the UTC offset, "
        "e.g. '2026-12-01T12:34:56+01:00 (Europe/Paris, Tuesday)'."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "timezone": {
                "type": "string",
                "description": "IANA time zone name such as 'Europe/Paris' or 'America/New_York'. Default: UTC.",
            }
        },
        "additionalProperties": False,
    },
    source="builtin",
    policy=Policy.auto,
    original_name="current_time",
)


def _power(base: float, exponent: float) -> float:
    if abs(exponent) > MAX_EXPONENT:
        raise simpleeval.NumberTooHigh(f"the exponent {exponent} is too large (at most {MAX_EXPONENT})")
    if abs(base) > MAX_POWER_BASE and abs(exponent) > 1:
        raise simpleeval.NumberTooHigh("the number raised to a power is too large (at most 10**100)")
    return operator.pow(base, exponent)


def _log(x: float, base: float | None = None) -> float:
    return math.log(x) if base is None else math.log(x, base)


_OPERATORS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: _power,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}
_FUNCTIONS = {
    "sqrt": math.sqrt,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "log": _log,
    "log10": math.log10,
    "exp": math.exp,
    "abs": abs,
    "round": round,
    "floor": math.floor,
    "ceil": math.ceil,
}
_NAMES = {"pi": math.pi, "e": math.e}


def format_number(value: int | float) -> str:
    """A number as text: an int exactly, a float with up to 15 significant digits (``0.1 + 0.2`` -> ``0.3``).

    Raises:
        ValueError: the int has more digits than Python converts to text (4300 by default).
    """
    if isinstance(value, int):
        return str(value)
    return format(value, ".15g")


def calculate(arguments: dict) -> ToolOutput:
    """Run the calculator on ``arguments["expression"]``.

    Returns:
        the value as text, or ``is_error=True`` with the reason (syntax, unknown name, division by zero,
        exponent or expression too large, a non-number result).
    """
    expression = arguments.get("expression")
    if not isinstance(expression, str) or not expression.strip():
        return ToolOutput("The expression is missing: pass it as the string argument 'expression'.", is_error=True)
    if len(expression) > MAX_EXPRESSION_LENGTH:
        return ToolOutput(
            f"The expression is {len(expression)} characters long; at most {MAX_EXPRESSION_LENGTH} are allowed.",
            is_error=True,
        )
    evaluator = simpleeval.SimpleEval(operators=_OPERATORS, functions=_FUNCTIONS, names=_NAMES)
    try:
        value = evaluator.eval(expression.strip())
    except ZeroDivisionError:
        return ToolOutput("Cannot evaluate the expression: division by zero.", is_error=True)
    except SyntaxError as exc:
        return ToolOutput(f"The expression is not valid arithmetic: {exc.msg}.", is_error=True)
    except simpleeval.NameNotDefined as exc:
        return ToolOutput(f"Unknown name {exc.name!r}: only pi and e are defined.", is_error=True)
    except simpleeval.FunctionNotDefined as exc:
        return ToolOutput(f"Unknown function {exc.func_name!r}: only {', '.join(_FUNCTIONS)}.", is_error=True)
    except simpleeval.NumberTooHigh as exc:
        return ToolOutput(f"Cannot evaluate the expression: {exc}.", is_error=True)
    except simpleeval.InvalidExpression as exc:
        return ToolOutput(f"The expression is not allowed: {exc}", is_error=True)
    except KeyError:  # simpleeval looks operators up by AST node type
        return ToolOutput("The expression uses an operator that is not supported: only + - * / // % **.", True)
    except OverflowError:
        return ToolOutput("Cannot evaluate the expression: the result is too large.", is_error=True)
    except (ValueError, TypeError, ArithmeticError) as exc:
        return ToolOutput(f"Cannot evaluate the expression: {exc}.", is_error=True)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return ToolOutput("The expression must evaluate to a number.", is_error=True)
    if isinstance(value, float) and not math.isfinite(value):
        return ToolOutput(f"Cannot evaluate the expression: the result is {value} (too large or undefined).", True)
    try:
        return ToolOutput(format_number(value))
    except ValueError:
        return ToolOutput("Cannot show the result: it has more than 4300 digits.", is_error=True)


def current_time(arguments: dict) -> ToolOutput:
    """The current time in ``arguments.get("timezone")`` (IANA name; UTC when absent or empty).

    Returns:
        e.g. ``"2026-12-01T12:34:56+01:00 (Europe/Paris, Tuesday)"``, or ``is_error=True`` for an unknown zone.
    """
    name = arguments.get("timezone") or "UTC"
    if not isinstance(name, str):
        return ToolOutput("The timezone must be a string such as 'Europe/Paris'.", is_error=True)
    try:
        zone = UTC if name == "UTC" else ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        shown = name if len(name) <= 64 else name[:64] + "…"
        return ToolOutput(
            f"Unknown time zone {shown!r}: use an IANA name such as 'Europe/Paris' or 'America/New_York'.",
            is_error=True,
        )
    now = datetime.now(zone)
    return ToolOutput(f"{now.isoformat(timespec='seconds')} ({name}, {now.strftime('%A')})")


#: The built-in tools and the functions that run them, by name.
BUILTINS: dict[str, tuple[Tool, Callable[[dict], ToolOutput]]] = {
    CALCULATOR.name: (CALCULATOR, calculate),
    CURRENT_TIME.name: (CURRENT_TIME, current_time),
}
