"""The root side of the trust boundary, against a real nginx: a compromised lbsync (whoever
can write its staging directory) cannot make root's nginx load anything but checked server
lines, and nothing it changes after the check reaches nginx."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from lbsync_lab.nginx import PrivateNginx
from lbsync_lab.nodes import StandinPool
from lbsync_lab.rig import addr, child_env, hp


def publish(nginx: PrivateNginx, *extra: str) -> subprocess.CompletedProcess[str]:
    """What root's unit runs, as a process: `python3 -m lbsync.publish STAGED LIVE -- nginx -t`."""
    return subprocess.run(
        [sys.executable, "-m", "lbsync.publish", str(nginx.staged), str(nginx.live), *extra,
         "--", *nginx.nginx_test], env=child_env(), capture_output=True, text=True, timeout=60)


def reload(nginx: PrivateNginx) -> None:
    workers = nginx.worker_pids()
    subprocess.run(nginx.reload_command, check=True)
    nginx.wait_reloaded(workers)


def test_the_cron_attack_is_refused_and_nothing_is_published(nginx: PrivateNginx,
                                                             tmp_path: Path) -> None:
    """The review's attack: a log_format and a server writing an access log into cron.d."""
    cron = tmp_path / "cron.d"
    cron.mkdir()
    nginx.staged_output.write_text(
        f"server {hp(1)};\n}}\nlog_format x escape=none '$http_x';\n"
        f"server {{ listen 127.0.0.1:{nginx.port + 1}; access_log {cron}/x x; }}\n"
        "upstream k8s_cluster_again {\n")
    live = nginx.output.read_bytes()
    result = publish(nginx, "--allow-loopback")
    assert result.returncode == 1
    assert result.stderr == ("lbsync publish: k8s_cluster.servers line 2: not a `server "
                             "ADDRESS:PORT [options];` line; nothing published\n")
    assert nginx.output.read_bytes() == live
    reload(nginx)
    request = urllib.request.Request(f"http://127.0.0.1:{nginx.port}/",
                                     headers={"X": "* * * * * root touch /tmp/owned"})
    with pytest.raises(urllib.error.HTTPError):  # 502: the placeholder is still all there is
        urllib.request.urlopen(request, timeout=5)
    assert list(cron.iterdir()) == []


@pytest.mark.parametrize("content", [
    "server unix:/run/containerd/containerd.sock;\n",  # passes nginx's own check
    "server 127.0.0.1:22;\n",  # the gateway's own sshd
    "server 169.254.169.254:80;\n",  # the cloud's metadata service
    "include /etc/shadow;\n",
])
def test_local_targets_are_refused_without_the_lab_switch(nginx: PrivateNginx,
                                                          content: str) -> None:
    nginx.staged_output.write_text(content)
    live = nginx.output.read_bytes()
    result = publish(nginx)
    assert result.returncode == 1 and "nothing published" in result.stderr
    assert nginx.output.read_bytes() == live


def test_a_symlink_or_a_fifo_in_the_staging_directory_is_refused(nginx: PrivateNginx) -> None:
    nginx.staged_output.symlink_to("/etc/shadow")
    result = publish(nginx, "--allow-loopback")
    assert result.returncode == 1 and "a symlink" in result.stderr
    nginx.staged_output.unlink()
    os.mkfifo(nginx.staged_output)  # would block a plain open() forever
    result = publish(nginx, "--allow-loopback")
    assert result.returncode == 1 and "not a regular file" in result.stderr


def test_changes_after_the_check_never_reach_nginx(nginx: PrivateNginx,
                                                   standins: StandinPool) -> None:
    """nginx reads root's copy: a compromised lbsync that swaps its file after publishing and
    then reloads nginx (which polkit lets it do) only reloads what root checked."""
    standins.add("node-1", addr(1), 32001)
    nginx.staged_output.write_text(f"server {hp(1)};\n")
    assert publish(nginx, "--allow-loopback").returncode == 0
    nginx.staged_output.write_text("server unix:/run/containerd/containerd.sock;\n")
    reload(nginx)
    assert nginx.output.read_text() == f"server {hp(1)};\n"
    with urllib.request.urlopen(f"http://127.0.0.1:{nginx.port}/", timeout=5) as resp:
        assert resp.read().decode().startswith("node-1")


def test_a_failing_nginx_test_leaves_the_live_files_as_they_were(nginx: PrivateNginx) -> None:
    nginx.staged_output.write_text(f"server {hp(1)};\n")
    live = nginx.output.read_bytes()
    (nginx.conf_d / "broken.conf").write_text("this is not nginx;\n")
    result = publish(nginx, "--allow-loopback")
    assert result.returncode == 1 and "live files restored" in result.stderr
    assert nginx.output.read_bytes() == live


def test_a_live_directory_others_can_write_is_refused(nginx: PrivateNginx) -> None:
    nginx.live.chmod(0o777)
    nginx.staged_output.write_text(f"server {hp(1)};\n")
    result = publish(nginx, "--allow-loopback")
    assert result.returncode == 1 and "writable by no one else" in result.stderr


def test_usage_errors_exit_2() -> None:
    result = subprocess.run([sys.executable, "-m", "lbsync.publish", "/a", "/b"],
                            env=child_env(), capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "after --" in result.stderr


def test_only_lines_root_already_published_skip_the_check(nginx: PrivateNginx) -> None:
    """A pass that changes one server of 5,000 checks one line: lines root already made live,
    under the same rules, are not checked again. Any other line is."""
    nginx.staged_output.write_text(f"server {hp(1)};\n")
    assert publish(nginx, "--allow-loopback").returncode == 0
    approved = (nginx.live / ".approved").read_text()
    assert approved.startswith("lbsync ") and "allow_loopback=1" in approved
    nginx.staged_output.write_text(f"server {hp(1)};\nserver unix:/run/containerd.sock;\n")
    result = publish(nginx, "--allow-loopback")
    assert result.returncode == 1 and "line 2: not a `server" in result.stderr
    assert nginx.output.read_text() == f"server {hp(1)};\n"


def test_other_rules_check_every_line_again(nginx: PrivateNginx) -> None:
    """A line published under looser rules is not approved under stricter ones: the record
    of the rules changes, and every line is checked again."""
    nginx.staged_output.write_text(f"server {hp(1)};\n")
    assert publish(nginx, "--allow-loopback").returncode == 0
    result = publish(nginx)  # the same file, without the lab's loopback switch
    assert result.returncode == 1 and f"{addr(1)} is loopback" in result.stderr
    result = publish(nginx, "--allow-loopback", "--port-range", "30000-30001")
    assert result.returncode == 1 and "port 32001 is outside 30000-30001" in result.stderr


def test_a_failed_test_after_a_rules_change_puts_the_record_back(nginx: PrivateNginx) -> None:
    """The live files go back to what was checked under the old rules, and so does the record:
    it never vouches for lines under rules they were not checked against."""
    nginx.staged_output.write_text(f"server {hp(1)};\n")
    assert publish(nginx, "--allow-loopback").returncode == 0
    record = (nginx.live / ".approved").read_bytes()
    nginx.staged_output.write_text(f"server {hp(2)};\n")
    (nginx.conf_d / "broken.conf").write_text("this is not nginx;\n")
    result = publish(nginx, "--allow-loopback", "--port-range", "32000-32767")
    assert result.returncode == 1 and "live files restored" in result.stderr
    assert (nginx.live / ".approved").read_bytes() == record
    assert nginx.output.read_text() == f"server {hp(1)};\n"


def test_only_the_nodes_networks_when_root_names_them(nginx: PrivateNginx) -> None:
    """--allowed-cidrs (the unit's NODE_CIDRS): a compromised lbsync cannot point the site
    outside the nodes' networks, not even at a line that is live already."""
    inside = ipaddress.ip_network(f"{addr(1)}/24", strict=False)
    nginx.staged_output.write_text(f"server {hp(1)};\n")
    assert publish(nginx, "--allow-loopback").returncode == 0  # no networks named: any
    result = publish(nginx, "--allow-loopback", "--allowed-cidrs=127.255.255.0/24")
    assert result.returncode == 1 and "outside the allowed networks" in result.stderr
    assert publish(nginx, "--allow-loopback", f"--allowed-cidrs={inside}").returncode == 0
    assert publish(nginx, "--allow-loopback", "--allowed-cidrs=").returncode == 0  # empty: any
    result = publish(nginx, "--allow-loopback", "--allowed-cidrs=10.0.0.1/16")
    assert result.returncode == 2 and "--allowed-cidrs: 10.0.0.1/16 has host bits set" in \
        result.stderr
