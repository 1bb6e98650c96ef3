"""The daemon's shipped files checked by the real tools: systemd-analyze, haproxy, nginx, keepalived."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, require_tool

UNITS = ("orchat.service", "orchat@.service")
INSTANCE_PORTS = [9091, 9092, 9093, 9094]


def render_unit(tmp_path: Path, name: str) -> Path:
    """Copy systemd/NAME with @BINDIR@ pointing at the repository's bin/ (ExecStart must exist)."""
    text = (REPO / "systemd" / name).read_text().replace("@BINDIR@", str(REPO / "bin"))
    path = tmp_path / name
    path.write_text(text)
    if name.endswith("@.service"):
        instance = tmp_path / name.replace("@.", "@1.")
        instance.symlink_to(path.name)
        return instance
    return path


@pytest.mark.component
@pytest.mark.parametrize("name", UNITS)
def test_systemd_analyze_verify_prints_nothing_for_the_units(tmp_path: Path, name: str) -> None:
    tool = require_tool("systemd-analyze")
    unit = render_unit(tmp_path, name)
    proc = subprocess.run([tool, "verify", unit.name], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


@pytest.mark.component
@pytest.mark.parametrize("name", UNITS)
def test_systemd_analyze_security_rates_the_units_ok_below_2_5(tmp_path: Path, name: str) -> None:
    tool = require_tool("systemd-analyze")
    unit = render_unit(tmp_path, name)
    proc = subprocess.run([tool, "security", "--offline=yes", unit.name], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", proc.stdout + proc.stderr)
    assert match, proc.stdout + proc.stderr
    assert float(match.group(1)) < 2.5 and match.group(2) == "OK"


@pytest.mark.parametrize("name", UNITS)
def test_units_are_notify_watchdog_hardened_and_read_the_key_as_a_credential(name: str) -> None:
    text = (REPO / "systemd" / name).read_text()
    for line in (
        "Type=notify",
        "ExecStart=@BINDIR@/orchatd",
        "Restart=on-failure",
        "RestartPreventExitStatus=77 78",
        "User=orchat",
        "LoadCredential=orchat-api-key:",
        "SyslogIdentifier=orchat",
        "LogRateLimitIntervalSec=",
        "LogRateLimitBurst=",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "LogsDirectory=orchat",
        "ConfigurationDirectory=orchat",
    ):
        assert line in text, line
    assert re.search(r"^WatchdogSec=\d+s$", text, re.M)
    assert re.search(r"^StateDirectory=orchat", text, re.M)
    assert "OPENROUTER_API_KEY" not in text and "ORCHAT_API_KEY" not in text


def test_template_instances_take_their_port_from_the_instance_env_files() -> None:
    text = (REPO / "systemd" / "orchat@.service").read_text()
    assert "EnvironmentFile=/etc/orchat/instances/%i.env" in text and "StateDirectory=orchat/%i" in text
    ports = []
    for index in range(1, 5):
        env = (REPO / "etc" / "orchat" / "instances" / f"{index}.env").read_text()
        ports.append(int(re.search(r"^ORCHAT_METRICS_PORT=(\d+)$", env, re.M).group(1)))
        assert f"ORCHAT_INSTANCE_NAME=orchat-{index}" in env
    assert ports == INSTANCE_PORTS


def test_balancers_send_traffic_to_every_instance_port() -> None:
    haproxy = (REPO / "etc" / "haproxy" / "orchat.cfg").read_text()
    nginx = (REPO / "etc" / "nginx" / "orchat.conf").read_text()
    assert [int(p) for p in re.findall(r"^\s*server \S+ 127\.0\.0\.1:(\d+) check", haproxy, re.M)] == INSTANCE_PORTS
    assert [int(p) for p in re.findall(r"^\s*server 127\.0\.0\.1:(\d+) ", nginx, re.M)] == INSTANCE_PORTS
    assert "uri /readyz" in haproxy and "proxy_buffering off;" in nginx
    assert "scrape each instance directly" in haproxy.lower() and "scrape each" in nginx.lower()


@pytest.mark.component
def test_haproxy_accepts_the_shipped_config() -> None:
    tool = require_tool("haproxy")
    proc = subprocess.run([tool, "-c", "-f", str(REPO / "etc" / "haproxy" / "orchat.cfg")], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Configuration file is valid" in proc.stdout + proc.stderr


def nginx_main_conf(tmp_path: Path, include: Path) -> Path:
    """Return a main nginx.conf with prefix-relative paths that includes INCLUDE in http {}."""
    (tmp_path / "logs").mkdir(exist_ok=True)
    temps = " ".join(f"{kind}_temp_path {tmp_path}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/logs/error.log;\nevents {{}}\nhttp {{\n  access_log off;\n  {temps}\n  include {include};\n}}\n"
    )
    return conf


@pytest.mark.component
def test_nginx_accepts_the_shipped_config(tmp_path: Path) -> None:
    tool = require_tool("nginx")
    conf = nginx_main_conf(tmp_path, REPO / "etc" / "nginx" / "orchat.conf")
    proc = subprocess.run([tool, "-t", "-p", str(tmp_path), "-c", str(conf)], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "test is successful" in proc.stderr


def an_existing_interface() -> str:
    names = sorted(p.name for p in Path("/sys/class/net").iterdir() if p.name != "lo")
    if not names:
        pytest.fail("keepalived -t needs a non-loopback interface and this machine has none")
    return names[0]


@pytest.mark.component
def test_keepalived_accepts_the_shipped_config_with_this_hosts_interface(tmp_path: Path) -> None:
    tool = require_tool("keepalived")
    text = (REPO / "etc" / "keepalived" / "keepalived.conf").read_text()
    conf = tmp_path / "keepalived.conf"
    conf.write_text(text.replace("interface eth0", f"interface {an_existing_interface()}"))
    proc = subprocess.run([tool, "-t", "-l", "-f", str(conf)], capture_output=True, text=True, timeout=60, check=False, start_new_session=True)
    assert proc.returncode == 0, proc.stderr


def test_keepalived_checks_the_health_endpoint_instead_of_pgrep() -> None:
    text = (REPO / "etc" / "keepalived" / "keepalived.conf").read_text()
    script = re.search(r'^\s*script "([^"]+)"', text, re.M).group(1)
    assert "curl -fsS" in script and "http://127.0.0.1:9091/readyz" in script
    assert "pgrep" not in script and "track_script" in text


def test_journald_drop_in_is_the_guides_and_warns_it_is_host_wide() -> None:
    text = (REPO / "etc" / "systemd" / "journald.conf.d" / "orchat.conf").read_text()
    for line in ("[Journal]", "Storage=persistent", "SystemMaxUse=1G", "SystemKeepFree=2G", "SystemMaxFileSize=100M", "MaxFileSec=1day", "Compress=yes"):
        assert line in text.splitlines()
    assert "WHOLE HOST" in text and "only on request" in text


@pytest.mark.component
def test_sysusers_file_creates_the_orchat_user(tmp_path: Path) -> None:
    tool = require_tool("systemd-sysusers")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    proc = subprocess.run(
        [tool, "--dry-run", f"--root={root}", str(REPO / "etc" / "sysusers.d" / "orchat.conf")], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "orchat" in proc.stdout + proc.stderr


def test_the_log_directory_has_one_owner_and_mode_in_tmpfiles_install_sh_the_units_and_the_packages() -> None:
    # A root run once made /var/log/orchat root:root 0750, and logrotate's `su orchat orchat` failed
    # (issue 13 item 3): every path that can create it must agree.
    entries = [line.split() for line in (REPO / "etc" / "tmpfiles.d" / "orchat.conf").read_text().splitlines() if line and not line.startswith("#")]
    assert entries == [["d", "/var/log/orchat", "0751", "orchat", "orchat", "-"], ["d", "/var/log/orchat/audit.log.d", "3773", "orchat", "orchat", "-"]]
    install_sh = (REPO / "install.sh").read_text()
    assert 'install -d -o orchat -g orchat -m 0751 "$LOGDIR"' in install_sh
    assert 'install -d -o orchat -g orchat -m 3773 "$LOGDIR/audit.log.d"' in install_sh
    for name in UNITS:
        unit = (REPO / "systemd" / name).read_text()
        assert "\nLogsDirectory=orchat\nLogsDirectoryMode=0751\n" in unit and "\nUser=orchat\nGroup=orchat\n" in unit
    # The packages: the .deb's postinst (only without systemd-tmpfiles) and the .rpm's payload.
    postinst = (REPO / "debian" / "orchat.postinst").read_text()
    assert "install -d -o orchat -g orchat -m 0751 /var/log/orchat\n" in postinst
    assert "install -d -o orchat -g orchat -m 3773 /var/log/orchat/audit.log.d\n" in postinst
    spec = (REPO / "orchat.spec").read_text()
    assert "%dir %attr(0751,orchat,orchat) %{_localstatedir}/log/orchat\n" in spec
    assert "%dir %attr(3773,orchat,orchat) %{_localstatedir}/log/orchat/audit.log.d\n" in spec


@pytest.mark.component
def test_systemd_tmpfiles_creates_the_log_directories_with_their_owner_and_mode(tmp_path: Path) -> None:
    sysusers, tmpfiles = require_tool("systemd-sysusers"), require_tool("systemd-tmpfiles")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for tool, conf in ((sysusers, "sysusers.d"), (tmpfiles, "tmpfiles.d")):
        extra = ["--create"] if tool == tmpfiles else []
        proc = subprocess.run(
            [tool, *extra, f"--root={root}", str(REPO / "etc" / conf / "orchat.conf")], capture_output=True, text=True, timeout=60, check=False
        )
        assert proc.returncode == 0, proc.stderr
    [uid] = [line.split(":")[2] for line in (root / "etc" / "passwd").read_text().splitlines() if line.startswith("orchat:")]
    for path, mode in (("var/log/orchat", 0o751), ("var/log/orchat/audit.log.d", 0o3773)):
        info = (root / path).stat()
        assert (info.st_uid, oct(info.st_mode & 0o7777)) == (int(uid), oct(mode)), path
