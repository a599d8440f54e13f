"""Helpers shared by the ``gateway`` commands: settings, services, errors, progress."""
from __future__ import annotations

import functools
import sys
from typing import Any, Callable, Iterable, Iterator, TypeVar

import click

from ..config import REQUIRED, Settings
from ..errors import GatewayError

T = TypeVar("T")


class CommandError(click.ClickException):
    """A failure the operator can act on: printed as one line, exit status 1."""

    def show(self, file: Any = None) -> None:  # noqa: D102
        click.echo(f"gateway: {self.format_message()}", err=True)


class GatewayGroup(click.Group):
    """A command group whose commands report a :class:`~gateway.errors.GatewayError` as one
    line (``gateway: ...``, exit status 1): the command line's one error handler."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GatewayError as exc:
            raise CommandError(exc.message or exc.code) from None


def load_settings(require: tuple[str, ...] = REQUIRED) -> Settings:
    """Read the settings for a command (a missing or malformed one stops it with one line)."""
    return Settings.from_env(require=require)


def get_services(require: tuple[str, ...] = REQUIRED):  # type: ignore[no-untyped-def]
    """The :class:`~gateway.services.Services` of this command invocation (built once)."""
    ctx = click.get_current_context()
    root = ctx.find_root()
    root.ensure_object(dict)
    if "services" not in root.obj:
        from ..services import build_services

        services = build_services(load_settings(require))
        root.obj["services"] = services
        root.call_on_close(services.close)
    return root.obj["services"]


def with_services(require: tuple[str, ...] = REQUIRED) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorator passing ``services`` as the first argument of a command."""

    def decorate(fn: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> T:
            return fn(get_services(require), *args, **kwargs)

        return wrapper

    return decorate


def progress(items: Iterable[T], *, total: int | None, desc: str, unit: str = "obj") -> Iterator[T]:
    """A progress bar on a terminal, plain progress lines otherwise."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        yield from tqdm(items, total=total, desc=desc, unit=unit, file=sys.stderr)
        return
    step = max(1, (total or 100) // 10)
    done = 0
    for item in items:
        yield item
        done += 1
        if done % step == 0 or done == total:
            click.echo(f"{desc}: {done}/{total if total is not None else '?'}", err=True)
