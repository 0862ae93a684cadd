"""`appliance web` and `appliance user add` (argparse lives in appliance/cli.py)."""

from __future__ import annotations

import sys
from pathlib import Path

from appliance.config import is_loopback

EXIT_BAD_INPUT = 2
PUBLIC_METHODS_HIDDEN = {"HEAD", "OPTIONS"}


def route_lines(app) -> list[str]:
    """`METHODS PATH` per route, methods comma-separated (HEAD/OPTIONS are implicit)."""
    lines = []
    for rule in app.url_map.iter_rules():
        methods = sorted(m for m in (rule.methods or ()) if m not in PUBLIC_METHODS_HIDDEN)
        lines.append(f"{','.join(methods)} {rule.rule}")
    return sorted(lines, key=lambda s: (s.split(" ", 1)[1], s))


def web_main(args) -> int:
    from appliance.panel import create_app

    if getattr(args, "list_routes", False):
        for line in route_lines(create_app({"DB_PATH": None})):
            print(line)
        return 0

    cfg = None
    if getattr(args, "config", None):
        from appliance.config import ConfigError, load_config

        try:
            cfg = load_config(args.config)
        except ConfigError as exc:
            print(f"error: {args.config}: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
    db = args.db or (str(cfg.resolve(cfg.paths.db)) if cfg else None)
    if not db:
        print("error: appliance web needs --db PATH (or --config with paths.db)", file=sys.stderr)
        return EXIT_BAD_INPUT
    host, port = args.host, args.port
    if cfg is not None and host == "127.0.0.1" and port == 8443:  # argparse defaults: config wins
        host, port = cfg.panel.host, cfg.panel.port

    certfile = keyfile = None
    if not args.no_tls:
        certfile = args.cert or (
            str(cfg.resolve(cfg.panel.cert_file)) if cfg and cfg.panel.cert_file else None
        )
        keyfile = args.key or (
            str(cfg.resolve(cfg.panel.key_file)) if cfg and cfg.panel.key_file else None
        )
        if bool(certfile) != bool(keyfile):
            print("error: --cert and --key go together", file=sys.stderr)
            return EXIT_BAD_INPUT
        if not certfile:
            from appliance.panel.tls import ensure_certificate

            folder = Path(db).resolve().parent
            c, k = ensure_certificate(folder / "panel-cert.pem", folder / "panel-key.pem")
            certfile, keyfile = str(c), str(k)
            print(f"self-signed certificate: {certfile}", file=sys.stderr)
        for f in (certfile, keyfile):
            if not Path(f).exists():
                print(f"error: {f}: no such file", file=sys.stderr)
                return EXIT_BAD_INPUT
    elif not is_loopback(host):
        print(
            f"warning: serving the panel on {host} without TLS: passwords and session cookies travel in clear",
            file=sys.stderr,
        )

    app = create_app({"DB_PATH": db, "TLS": not args.no_tls, "APP_CONFIG": cfg})
    serve(app, host, port, certfile, keyfile, app.config["MAX_STREAMS"])
    return 0


def serve(
    app, host: str, port: int, certfile: str | None, keyfile: str | None, max_streams: int = 16
) -> None:
    """gunicorn with the options the systemd unit uses too (`serving.gunicorn_options`)."""
    from gunicorn.app.base import BaseApplication

    from appliance.panel.serving import gunicorn_options

    opts = gunicorn_options(host, port, certfile, keyfile, max_streams)

    class _Panel(BaseApplication):
        def load_config(self):
            for k, v in opts.items():
                self.cfg.set(k, v)

        def load(self):
            return app

    _Panel().run()


def user_main(args) -> int:
    from appliance.panel import users

    cmd = getattr(args, "user_cmd", "add")
    if cmd in USER_ADMIN:
        return user_admin(args)
    if cmd != "add":
        print(f"error: unknown user command {cmd!r}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not getattr(args, "password_stdin", False):
        print("error: pass the password on stdin with --password-stdin", file=sys.stderr)
        return EXIT_BAD_INPUT
    password = sys.stdin.readline().rstrip("\r\n")
    try:
        users.validate(args.name, args.role, password)
    except users.UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    db = users.open_db(args.db)
    try:
        users.add_user(db, args.name, args.role, password)
        users.audit(db, "user_add", "cli", detail={"name": args.name, "role": args.role})
    except users.UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        db.conn.close()
    print(f"user {args.name} ({args.role}) added to {args.db}")
    return 0


USER_ADMIN = ("list", "disable", "enable", "delete", "passwd")


def user_admin(args) -> int:
    """`appliance user list|disable|enable|delete|passwd`: each change is in the audit log and
    ends the user's sessions where the panel's admins' buttons would (the same functions)."""
    import json
    import time

    from appliance.panel import users

    cmd = args.user_cmd
    password = None
    if cmd == "passwd":
        password = sys.stdin.readline().rstrip("\r\n")
        try:
            users.validate_password(password)
        except users.UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
    db = users.open_db(args.db)
    try:
        if cmd == "list":
            rows = users.list_users(db)
            if args.json:
                print(json.dumps(rows, indent=1))
            for r in [] if args.json else rows:
                state = "disabled" if r["disabled"] else "enabled"
                seen = r["last_login_at"]
                when = time.strftime("%Y-%m-%d %H:%M", time.localtime(seen)) if seen else "never"
                print(f"{r['name']:24s} {r['role']:10s} {state:8s} last login {when}")
            return 0
        action = {
            "disable": users.disable_user,
            "enable": users.enable_user,
            "delete": users.delete_user,
            "passwd": lambda d, n: users.set_password(d, n, password),
        }[cmd]
        try:
            action(db, args.name)
        except users.UserError as exc:
            users.audit(db, f"user_{cmd}", "cli", ok=False, detail={"name": args.name[:64]})
            print(f"error: {exc}", file=sys.stderr)
            return 1
        users.audit(db, f"user_{cmd}", "cli", detail={"name": args.name})
    finally:
        db.conn.close()
    print(f"user {args.name}: {cmd} done")
    return 0
