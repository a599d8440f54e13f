"""Helpers shared by the ``gateway`` commands: settings, services, errors, progress."""
from __future__ import annotations

import functools
import sys
from typing import Any, Callable, Iterable, Iterator, TypeVar

import click

from ..config import REQUIRED, Settings, SettingsError

T = TypeVar("T")


class CommandError(click.ClickException):
    """A failure the operator can act on: printed as one line, exit status 1."""

    def show(self, file: Any = None) -> None:  # noqa: D102
        click.echo(f"gateway: {self.format_message()}", err=True)


def load_settings(require: tuple[str, ...] = REQUIRED) -> Settings:
    """Read the settings for a command, stopping with one line if one is missing or malformed."""
    try:
        return Settings.from_env(require=require)
    except SettingsError as exc:
        raise CommandError(str(exc)) from None


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


def find_org(session, ref: str):  # type: ignore[no-untyped-def]
    """An organisation by id or by name, or a :class:`CommandError`."""
    from sqlalchemy import select

    from ..models import Organisation

    org = session.get(Organisation, ref) or session.scalar(
        select(Organisation).where(Organisation.name == ref)
    )
    if org is None:
        raise CommandError(f"no organisation with id or name {ref!r}")
    return org


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
