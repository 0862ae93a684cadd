"""The `appliance` command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from appliance import __version__

log = logging.getLogger("appliance")

EXIT_BAD_INPUT = 2


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def _load_cfg(path: str | None):
    from appliance.config import AppConfig, load_config

    return load_config(path) if path else AppConfig()


# -- commands ------------------------------------------------------------------------------


def cmd_demo(a: argparse.Namespace) -> int:
    from appliance.ops.demo import run_demo

    result = run_demo(
        a.once, a.json, a.no_panel, a.mqtt, a.db, a.speed, a.port, history=not a.no_history
    )
    print(
        json.dumps(result)
        if a.json
        else f"calls={result['calls']} (earlier, seeded: {result['history']}) utterances={result['utterances']} published={result['published']} pending={result['pending']} db={result['db']}"
    )
    return 0


def cmd_analyze(a: argparse.Namespace) -> int:
    from appliance.capture.wav import AudioError, open_wav
    from appliance.config import ConfigError
    from appliance.ops.analysis import analyze_file, speakers_for
    from appliance.ops.engines import load_engines
    from appliance.pipeline.call import CallMeta

    try:
        cfg = _load_cfg(a.config)
        # refuse a bad or too long file before loading models or touching a database
        speakers_for(open_wav(a.file, cfg.analyze.max_duration_s), a.channels)
    except (AudioError, ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    engines = load_engines(cfg, with_stt=not a.no_stt)
    meta = CallMeta(
        position=a.position or cfg.positions[0].id,
        customer_ref=a.customer or "",
        call_type=a.call_type or cfg.positions[0].call_type,
        segment=a.segment or "",
    )
    result = analyze_file(
        a.file,
        cfg,
        engines,
        channels=a.channels,
        db_path=a.db,
        mqtt_url=a.mqtt or (cfg.mqtt.url or None),
        meta=meta,
        enrolment=a.agent_enrolment,
    )
    if a.json:
        print(json.dumps(result))
    else:
        c = result["call"]
        print(
            f"call {c['id']}: {len(result['utterances'])} utterances, sentiment {c.get('sentiment_start')} -> {c.get('sentiment_end')}, alerts {len(result['alerts'])}"
        )
        for u in result["utterances"]:
            emo = u["emotion"]["label"] if u["emotion"] else "-"
            print(
                f"  {u['start']:6.1f}-{u['end']:6.1f} {u['speaker']:8s} {emo:9s} {u['sentiment'] if u['sentiment'] is not None else '':>7} {u['text'] or ''}"
            )
        for al in result["alerts"]:
            print(f"  ALERT {al['at']:6.1f}s {al['severity']}: {al['reason']}")
    return 0


def cmd_check_config(a: argparse.Namespace) -> int:
    from appliance.config import ConfigError, config_reference, load_config, referenced_files

    if a.describe:
        print(config_reference(markdown=a.markdown), end="")
        return 0
    if not a.path:
        print("error: check-config needs a PATH (or --describe)", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        cfg = load_config(a.path)
    except ConfigError as exc:
        print(f"error: {a.path}: {exc}", file=sys.stderr)
        return 1
    missing = [(k, p, why) for k, p in referenced_files(cfg) if (why := _missing(p))]
    for key, p, why in missing:
        print(f"{'error' if a.strict else 'warning'}: {key}: {p} {why}", file=sys.stderr)
    if missing and a.strict:
        return 1
    _warn_open_metrics(cfg)
    print(f"ok: {a.path} (box {cfg.box.id}, {len(cfg.positions)} position(s))")
    return 0


def _missing(p: Path) -> str:
    """Why a file the config names cannot be used ("" when it exists)."""
    try:
        return "" if p.exists() else "does not exist"
    except OSError as exc:  # e.g. a folder this user may not enter
        return f"cannot be checked ({exc.strerror})"


def _warn_open_metrics(cfg) -> None:
    from appliance.config import is_loopback

    d = cfg.daemon
    host = d.metrics_listen.rpartition(":")[0]
    if d.metrics_listen != "off" and not is_loopback(host) and not d.metrics_token_file:
        print(
            f"warning: daemon.metrics_listen {d.metrics_listen} is off loopback without"
            " daemon.metrics_token_file: anyone who reaches it reads the box's health",
            file=sys.stderr,
        )


def cmd_list_devices(a: argparse.Namespace) -> int:
    from appliance.capture.sources import list_devices

    devices = list_devices()
    if a.json:
        print(json.dumps(devices))
    elif not devices:
        print("no input devices found")
    for d in devices if not a.json else []:
        print(
            f"{d['index']:3d}  {d['name']}  ({d['inputs']} inputs, {d['default_samplerate']:.0f} Hz)"
        )
    return 0


def cmd_run(a: argparse.Namespace) -> int:
    from appliance.config import ConfigError
    from appliance.ops.daemon import run_daemon

    try:
        cfg = _load_cfg(a.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return run_daemon(cfg)


def cmd_outbox(a: argparse.Namespace) -> int:
    from appliance.store.outbox import outbox_status

    if not Path(a.db).exists():
        print(f"error: {a.db}: no such database", file=sys.stderr)
        return EXIT_BAD_INPUT
    if a.outbox_cmd == "status":
        print(json.dumps(outbox_status(a.db)))
        return 0
    from appliance.ops.analysis import start_publisher

    pub = start_publisher(_load_cfg(a.config), a.db, a.mqtt)
    try:
        ok = pub.flush(a.timeout)
    finally:
        pub.stop()
    status = outbox_status(a.db)
    print(json.dumps({"flushed": ok, **status}))
    return 0 if ok else 1


def cmd_bench(a: argparse.Namespace) -> int:
    # Each benchmark parses its own options (`appliance bench capacity --help`).
    if a.what == "features":
        from appliance.tools import bench_features as bench
    elif a.what == "capacity":
        from appliance.tools import bench_capacity as bench
    elif a.what == "realism":
        from appliance.tools import bench_realism as bench
    elif a.what == "vad":
        from appliance.tools import bench_vad as bench
    else:
        from appliance.tools import bench_stt as bench
    return bench.main(a.options)


def cmd_emotion_eval(a: argparse.Namespace) -> int:
    from appliance.tools import emotion_eval

    argv = (
        ["--manifest", a.manifest]
        + (["--json"] if a.json else [])
        + (["--model", a.model] if a.model else [])
    )
    return emotion_eval.main(argv)


def cmd_train_emotion(a: argparse.Namespace) -> int:
    import subprocess

    script = Path(__file__).resolve().parent.parent / "models" / "train_emotion.py"
    if not script.exists():
        print(
            "error: models/train_emotion.py not found (training runs from a checkout)",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    # A child process runs the script as a script: Python puts models/ first on its path, so the
    # training package (models/emotion_training/) imports without path edits here or there.
    argv = [sys.executable, str(script), "--data", a.data, "--out", a.out, *a.extra]
    return subprocess.run(argv, check=False).returncode


def cmd_web(a: argparse.Namespace) -> int:
    from appliance.panel.cli import web_main

    return web_main(a)


def cmd_user(a: argparse.Namespace) -> int:
    from appliance.panel.cli import user_main

    return user_main(a)


def cmd_retention(a: argparse.Namespace) -> int:
    from appliance.store.overrides import effective_config
    from appliance.store.retention import purge

    cfg = _load_cfg(a.config)
    db = a.db or str(cfg.resolve(cfg.paths.db))
    print(json.dumps(purge(db, effective_config(cfg, db).retention)))
    return 0


def cmd_customer_key(a: argparse.Namespace) -> int:
    from appliance.publish import pseudonym

    try:
        if a.key_cmd == "new":
            key = pseudonym.new_key_file(a.file)
            print(f"{a.file}: new site key {pseudonym.key_id(key)}")
            return 0
        key = pseudonym.load_key(a.key_file)
    except pseudonym.PseudonymKeyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if a.key_cmd == "id":
        print(pseudonym.key_id(key))
    else:
        for ref in a.references or (line.strip() for line in sys.stdin if line.strip()):
            print(f"{ref}\t{pseudonym.pseudonymise(ref, key)}")
    return 0


def cmd_bridge(a: argparse.Namespace) -> int:
    from appliance.bridge.cli import main

    return main(a)


def add_bridge_parser(sub) -> None:
    from appliance.bridge.cli import add_parser

    add_parser(sub)
    sub.choices["bridge"].set_defaults(func=cmd_bridge)


def add_customer_key_parser(sub) -> None:
    k = sub.add_parser(
        "customer-key",
        help="the site's customer pseudonym key: create it, name it, hash references",
    )
    ksub = k.add_subparsers(dest="key_cmd", required=True)
    kn = ksub.add_parser("new", help="create a site key file (32 random bytes, mode 0600)")
    kn.add_argument("file")
    ki = ksub.add_parser("id", help="print the key id boxes publish as `customer_key`")
    ki.add_argument("--key-file", required=True)
    kp = ksub.add_parser(
        "pseudonym", help="print REF<TAB>published id for each reference (or stdin lines)"
    )
    kp.add_argument("--key-file", required=True)
    kp.add_argument("references", nargs="*", metavar="REF")
    k.set_defaults(func=cmd_customer_key)


def _voip(a: argparse.Namespace, kind: str) -> int:
    from appliance.config import ConfigError
    from appliance.ops.engines import load_engines
    from appliance.ops.voip import install_stop_handlers, run_voip, with_agent_nets
    from appliance.voip.sniff import SniffError

    try:
        cfg = _load_cfg(a.config)
        if kind == "tap":
            nets = with_agent_nets(cfg, a.agent_net)
        else:
            nets = a.agent_net or ",".join(cfg.voip.agent_nets)
        _check_voip_args(a, kind, nets)  # before the models load: a typo answers at once
    except (ConfigError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    import threading

    stop = threading.Event()
    install_stop_handlers(stop)
    engines = load_engines(cfg, with_stt=not a.no_stt)
    try:
        docs = run_voip(
            kind,
            cfg,
            a.db,
            engines,
            mqtt_url=a.mqtt or (cfg.mqtt.url or None),
            max_calls=a.max_calls,
            stop=stop,
            interface=getattr(a, "interface", ""),
            agent_nets=nets,
            listen=getattr(a, "listen", ""),
        )
    except (SniffError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if a.json:
        print(json.dumps({"calls": docs}))
    else:
        for d in docs:
            c, v = d["call"], d["voip"]
            print(
                f"call {c['id']} ({v['sip_call_id']}): {len(d['utterances'])} utterances, "
                f"alerts {len(d['alerts'])}"
            )
    return 0


def _check_voip_args(a: argparse.Namespace, kind: str, nets: str) -> None:
    import socket

    from appliance.voip.siprec import split_hostport
    from appliance.voip.tap import parse_nets

    if nets:
        parse_nets(nets)
    if kind == "tap":
        try:
            socket.if_nametoindex(a.interface)
        except OSError:
            raise ValueError(f"--interface: no network interface {a.interface!r}") from None
    else:
        split_hostport(a.listen)
    if a.max_calls is not None and a.max_calls < 1:
        raise ValueError("--max-calls must be at least 1")


def cmd_tap(a: argparse.Namespace) -> int:
    return _voip(a, "tap")


def cmd_siprec(a: argparse.Namespace) -> int:
    return _voip(a, "siprec")


def _voip_parsers(sub) -> None:
    """`tap` (passive SIP/RTP on a mirrored port) and `siprec` (a SIPREC recording server)."""
    t = sub.add_parser("tap", help="score calls sniffed from a mirrored switch port (SIP/RTP)")
    t.add_argument("--interface", required=True, help="capture interface (needs CAP_NET_RAW)")
    s = sub.add_parser("siprec", help="a SIPREC recording server (RFC 7866) for PBXs and SBCs")
    s.add_argument("--listen", required=True, metavar="HOST:PORT", help="SIP over UDP and TCP")
    for p, func in ((t, cmd_tap), (s, cmd_siprec)):
        p.add_argument(
            "--agent-net",
            metavar="CIDR",
            help="agents' addresses, comma-separated (default voip.agent_nets)",
        )
        p.add_argument("--db", required=True, metavar="PATH")
        p.add_argument("--mqtt", metavar="URL", help="publish through the outbox to this broker")
        p.add_argument("--config", metavar="PATH", help="appliance config (TOML)")
        p.add_argument("--max-calls", type=int, metavar="N", help="exit after N calls")
        p.add_argument("--json", action="store_true", help='print {"calls": [...]} at the end')
        p.add_argument("--no-stt", action="store_true", help="skip speech to text")
        p.set_defaults(func=func)


# -- parser --------------------------------------------------------------------------------


def _user_admin_parsers(usub) -> None:
    """`user list | disable | enable | delete | passwd` (panel/cli.py runs them)."""
    ul = usub.add_parser("list", help="list panel users")
    ul.add_argument("--json", action="store_true")
    ul.add_argument("--db", required=True)
    for name, text in (
        ("disable", "disable a user (its sessions end at once)"),
        ("enable", "enable a disabled user"),
        ("delete", "delete a user (its sessions end at once)"),
        ("passwd", "set a new password from stdin (the user's sessions end)"),
    ):
        sp = usub.add_parser(name, help=text)
        sp.add_argument("name")
        sp.add_argument("--db", required=True)
        if name == "passwd":
            sp.add_argument("--password-stdin", action="store_true", required=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="appliance", description="On-prem call-center emotion appliance."
    )
    p.add_argument("--version", action="version", version=f"appliance {__version__}")
    p.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)"
    )
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="replay the bundled demo call through the whole pipeline")
    d.add_argument(
        "--once", action="store_true", help="exit after the replay (replays as fast as possible)"
    )
    d.add_argument("--json", action="store_true", help="print one JSON object with the counts")
    d.add_argument("--no-panel", action="store_true", help="do not serve the panel")
    d.add_argument(
        "--mqtt",
        metavar="URL",
        help="external broker (default: a private mosquitto on a free port)",
    )
    d.add_argument("--db", metavar="PATH", help="database file (default ./demo.db)")
    d.add_argument(
        "--speed", type=float, help="replay speed: 1 = real time, 0 = as fast as possible"
    )
    d.add_argument(
        "--port", type=int, default=8080, help="panel port on 127.0.0.1 (0 = any free port)"
    )
    d.add_argument(
        "--no-history", action="store_true", help="do not seed earlier calls on a new database"
    )
    d.set_defaults(func=cmd_demo)

    an = sub.add_parser("analyze", help="analyse a WAV recording through the live pipeline")
    an.add_argument("file")
    an.add_argument(
        "--channels",
        help="agent,customer | customer,agent | customer | agent | mixed (mono, diarized)",
    )
    an.add_argument(
        "--agent-enrolment", metavar="WAV", help="with --channels mixed: the agent's voice"
    )
    an.add_argument("--db", metavar="PATH", help="database (default: a temporary one)")
    an.add_argument("--mqtt", metavar="URL", help="publish through the outbox to this broker")
    an.add_argument("--json", action="store_true")
    an.add_argument("--config", metavar="PATH", help="appliance config (TOML)")
    an.add_argument("--customer", help="customer reference (pseudonymised when published)")
    an.add_argument("--call-type", choices=("support", "sales", "check-in"))
    an.add_argument("--segment", help="customer segment tag")
    an.add_argument("--position", help="agent position id")
    an.add_argument("--no-stt", action="store_true", help="skip speech to text")
    an.set_defaults(func=cmd_analyze)

    r = sub.add_parser("run", help="the daemon: live capture of the configured positions")
    r.add_argument("--config", required=True, metavar="PATH")
    r.set_defaults(func=cmd_run)

    c = sub.add_parser("check-config", help="validate a config file")
    c.add_argument("path", nargs="?")
    c.add_argument("--strict", action="store_true", help="missing referenced files are errors")
    c.add_argument(
        "--describe", action="store_true", help="print every key with its default and description"
    )
    c.add_argument(
        "--markdown", action="store_true", help="with --describe: the Markdown of docs/config.md"
    )
    c.set_defaults(func=cmd_check_config)

    ld = sub.add_parser("list-devices", help="list audio input devices")
    ld.add_argument("--json", action="store_true")
    ld.set_defaults(func=cmd_list_devices)

    o = sub.add_parser("outbox", help="inspect or flush the MQTT outbox")
    osub = o.add_subparsers(dest="outbox_cmd", required=True)
    os_ = osub.add_parser("status")
    os_.add_argument("--db", required=True)
    of = osub.add_parser("flush")
    of.add_argument("--db", required=True)
    of.add_argument("--mqtt", required=True, metavar="URL")
    of.add_argument("--timeout", type=float, default=30.0)
    of.add_argument("--config", metavar="PATH", help="config with box id, prefix and TLS settings")
    o.set_defaults(func=cmd_outbox)

    b = sub.add_parser(
        "bench", help="benchmarks (print ratios against peers measured in the same run)"
    )
    b.add_argument("what", choices=("features", "capacity", "stt", "realism", "vad"))
    b.add_argument(
        "options",
        nargs=argparse.REMAINDER,
        help="the benchmark's own options, e.g. capacity --calls 4 --json (see bench WHAT --help)",
    )
    b.set_defaults(func=cmd_bench)

    ee = sub.add_parser("emotion-eval", help="evaluate the emotion model on a manifest CSV")
    ee.add_argument("--manifest", required=True)
    ee.add_argument("--json", action="store_true")
    ee.add_argument("--model", help="model directory or card (default: bundled)")
    ee.set_defaults(func=cmd_emotion_eval)

    te = sub.add_parser(
        "train-emotion",
        help="train the emotion model from a manifest CSV",
        epilog="Further options (--folds N, --quick, --cache DIR, --no-cv) go to "
        "models/train_emotion.py unchanged.",
    )
    te.add_argument("--data", required=True, metavar="MANIFEST")
    te.add_argument("--out", required=True, metavar="DIR")
    te.set_defaults(func=cmd_train_emotion, extra=[])

    w = sub.add_parser("web", help="serve the supervisor panel")
    w.add_argument("--db", metavar="PATH")
    w.add_argument("--host", default="127.0.0.1")
    w.add_argument("--port", type=int, default=8443)
    w.add_argument("--no-tls", action="store_true")
    w.add_argument("--cert")
    w.add_argument("--key")
    w.add_argument("--list-routes", action="store_true")
    w.add_argument("--config", metavar="PATH")
    w.set_defaults(func=cmd_web)

    u = sub.add_parser("user", help="manage panel users")
    usub = u.add_subparsers(dest="user_cmd", required=True)
    ua = usub.add_parser("add")
    ua.add_argument("name")
    ua.add_argument("--role", choices=("supervisor", "admin"), required=True)
    ua.add_argument("--password-stdin", action="store_true", required=True)
    ua.add_argument("--db", required=True)
    _user_admin_parsers(usub)
    u.set_defaults(func=cmd_user)

    rt = sub.add_parser("retention", help="purge data past its retention")
    rt.add_argument("--config", metavar="PATH")
    rt.add_argument("--db", metavar="PATH")
    rt.set_defaults(func=cmd_retention)
    add_customer_key_parser(sub)
    add_bridge_parser(sub)
    _voip_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # train-emotion hands its other options to the training script, which owns and checks them
    # (argparse's REMAINDER cannot take "--quick" after the subcommand's own options)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        if getattr(args, "func", None) is not cmd_train_emotion:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        args.extra = unknown
    _setup_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (RuntimeError, ValueError) as exc:
        code = _reported(exc)
        if code is None:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return code


def _reported(exc: BaseException) -> int | None:
    """The exit code of a failure a command reports in one line (the message names the key or
    the file and why), never as a traceback: a bad config (2), a database it cannot open or
    write, an unusable key (1). None for anything else."""
    from appliance.config import ConfigError
    from appliance.publish.pseudonym import PseudonymKeyError
    from appliance.store.connection import StorageError

    if isinstance(exc, ConfigError):
        return EXIT_BAD_INPUT
    return 1 if isinstance(exc, (StorageError, PseudonymKeyError)) else None


if __name__ == "__main__":
    sys.exit(main())
