"""The station's user store and the `vitalstream users` command: argon2id hashes only, roles
and wards checked, a disabled user cannot sign in, the file is the owner's only."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from vitalstream.auth.users import UserStore, UserStoreError, WatchedUsers

pytestmark = pytest.mark.security
PASSWORD = "correct horse battery staple"


def run_users(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vitalstream", "users", *args], input=stdin,
                          capture_output=True, text=True, timeout=60)


def test_the_file_holds_argon2id_hashes_never_passwords_and_only_its_owner_reads_it(tmp_path: Path) -> None:
    store = UserStore(path=tmp_path / "users.json")
    user = store.add("anna", "Anna Smith", "bedside_nurse", ["4B"], PASSWORD)
    store.save()
    text = (tmp_path / "users.json").read_text()
    assert PASSWORD not in text and "$argon2id$" in text
    assert stat.S_IMODE(os.stat(tmp_path / "users.json").st_mode) == 0o600
    again = UserStore.load(tmp_path / "users.json")
    assert again.verify("anna", PASSWORD) == user
    assert again.verify("anna", PASSWORD + "x") is None and again.verify("nobody", PASSWORD) is None
    assert user.actor() == {"user_id": user.user_id, "role": "bedside_nurse", "name": "Anna Smith"}
    assert PASSWORD not in repr(user) and user.password_hash not in repr(user)


@pytest.mark.parametrize("args, reason", [
    (("anna", "Anna", "matron", ["4B"], PASSWORD), "unknown role"),
    (("anna", "Anna", "physician", [], PASSWORD), "at least one ward"),
    (("an na", "Anna", "physician", ["4B"], PASSWORD), "without spaces"),
    (("anna", "Anna", "physician", ["4B"], "short"), "shorter than 12"),
])
def test_a_user_without_a_known_role_a_ward_or_a_long_enough_password_is_refused(args, reason) -> None:
    with pytest.raises(UserStoreError, match=reason):
        UserStore().add(*args)


def test_a_disabled_user_cannot_sign_in_and_the_station_sees_the_change(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    store = UserStore(path=path)
    store.add("gil", "Gil", "charge_nurse", ["4B"], PASSWORD)
    store.save()
    watched = WatchedUsers(path, check_s=0.0)
    assert watched.current(1.0).verify("gil", PASSWORD) is not None
    store.update("gil", disabled=True)
    store.save()
    assert watched.current(2.0).verify("gil", PASSWORD) is None


def test_users_command_adds_lists_changes_and_disables(tmp_path: Path) -> None:
    path = str(tmp_path / "users.json")
    added = run_users("add", "dora", "--file", path, "--name", "Dr Dora Ahmed", "--role", "physician",
                      "--ward", "4B", "--ward", "4C", "--password-stdin", stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    generated = run_users("add", "eve", "--file", path, "--name", "Eve", "--role", "bedside_nurse", "--ward", "4B")
    assert generated.returncode == 0 and "generated password (shown once)" in generated.stderr
    password = generated.stderr.rsplit(": ", 1)[1].strip()
    assert UserStore.load(path).verify("eve", password) is not None
    assert run_users("disable", "eve", "--file", path).returncode == 0
    listing = run_users("list", "--file", path).stdout
    assert "dora" in listing and "physician" in listing and "4B,4C" in listing
    assert "eve" in listing and "disabled" in listing and PASSWORD not in listing and password not in listing
    refused = run_users("add", "dora", "--file", path, "--name", "D", "--role", "physician", "--ward", "4B",
                        "--password-stdin", stdin=PASSWORD + "\n")
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1 and "exists" in refused.stderr
    wrong_role = run_users("add", "x", "--file", path, "--name", "X", "--role", "matron", "--ward", "4B")
    assert wrong_role.returncode == 2
