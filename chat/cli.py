"""The command line: ``python app.py [options]`` (or the installed ``parley [options]``) serves Parley;
``python app.py user …`` (``parley user …``) manages accounts.

``user`` commands (they read the same ``DATABASE_URL`` / ``PARLEY_DATA_DIR`` / ``.env`` as the server, or
``--data-dir`` / ``--database-url``):

* ``user add NAME [--admin]`` — create a user. The password is asked twice on a terminal, or read as the first line
  of standard input (``echo "$PASSWORD" | python app.py user add ann``). The first user turns accounts on (restart
  Parley): from then on every page and API call needs a login or an API token, and the conversations made before
  belong to that first user.
* ``user passwd NAME`` — set a user's password (the same way); their browsers are logged out.
* ``user list`` — the users, one per line: name, admin, disabled.

Exit status: 0 on success, 2 with one line on standard error for a refused name or password, a taken name or an
unknown user.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from .auth import Accounts, WeakPassword
from .config import Settings, load_settings
from .store import NameTaken, Store


def read_password(stdin_is_terminal: bool | None = None) -> str:
    """A new password: asked twice without echo on a terminal, else the first line of standard input.

    Raises:
        WeakPassword: the two entries differ, or standard input is empty.
    """
    if stdin_is_terminal if stdin_is_terminal is not None else sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat it: ") != password:
            raise WeakPassword("The two passwords differ.")
        return password
    line = sys.stdin.readline()
    if not line:
        raise WeakPassword("No password on standard input.")
    return line.rstrip("\r\n")


def user_command(argv: list[str], prog: str = "app.py") -> int:
    """Run ``user add|passwd|list`` (``argv`` without the leading ``user``); return the exit status.

    Args:
        argv: the arguments after ``user``.
        prog: the program's name in ``--help``.
    """
    parser = argparse.ArgumentParser(prog=f"{prog} user", description="Manage Parley's user accounts.")
    parser.add_argument("--data-dir", help="Parley's data folder (default: as the server's settings).")
    parser.add_argument("--database-url", help="SQLAlchemy URL of the database (default: as the server's).")
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="Create a user (password from a prompt or standard input).")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true", help="May open the admin page.")
    passwd = commands.add_parser("passwd", help="Set a user's password and log out their browsers.")
    passwd.add_argument("name")
    commands.add_parser("list", help="List the users.")
    arguments = parser.parse_args(argv)

    settings: Settings = load_settings(None)
    if arguments.data_dir:
        settings = settings.model_copy(update={"data_dir": Path(arguments.data_dir)})
    if arguments.database_url:
        settings = settings.model_copy(update={"database_url": arguments.database_url})
    store = Store(settings.sqlalchemy_url)
    try:
        store.migrate()
        accounts = Accounts(store, enabled=True)
        if arguments.command == "list":
            for user in store.list_users():
                flags = [flag for flag, on in (("admin", user.is_admin), ("disabled", user.disabled)) if on]
                print(user.name + (f" ({', '.join(flags)})" if flags else ""))
            return 0
        if arguments.command == "add":
            first = store.count_users() == 0
            user = accounts.add_user(arguments.name, read_password(), is_admin=arguments.admin)
            print(f"Added {'admin ' if user.is_admin else ''}user {user.name}.")
            if first:
                print("Accounts are now on: restart Parley, and log in as this user.")
            return 0
        user = store.user_by_name(arguments.name.strip())
        if user is None or user.id is None:
            raise WeakPassword(f"There is no user named {arguments.name!r}.")
        accounts.set_password(user.id, read_password())
        print(f"Set the password of {user.name}; their browsers are logged out.")
        return 0
    except (WeakPassword, NameTaken) as refusal:
        print(f"parley: {refusal}", file=sys.stderr)
        return 2
    finally:
        store.close()


def main(argv: list[str] | None, prog: str = "app.py") -> None:
    """Serve Parley with the settings of ``argv`` (None: environment only), or run a ``user`` command.

    Args:
        argv: the command-line arguments without the program name; None reads no flags (NiceGUI's test simulation).
        prog: the program's name in ``--help``.

    Exits:
        with a ``user`` command's status; with status 2 and one line on standard error for a bad setting.
    """
    if argv and argv[0] == "user":
        raise SystemExit(user_command(argv[1:], prog))
    from .server import run  # NiceGUI is imported only to serve

    run(load_settings(argv, prog))


def command() -> None:
    """The ``parley`` console command (``[project.scripts]``): ``main`` with this process's arguments.

    NiceGUI needs no ``__main__`` file for this: ``ui.run`` with ``reload=False`` serves the app object in this
    process (only auto-reload re-imports the main file).
    """
    main(sys.argv[1:], "parley")
