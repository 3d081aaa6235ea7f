from factory import build, platforms


def binfmt(tmp_path, **handlers):
    for name, state in handlers.items():
        (tmp_path / f"qemu-{name}").write_text(f"{state}\ninterpreter /usr/libexec/qemu-binfmt/{name}-binfmt-P\n")
    return tmp_path


def test_host_platform_needs_no_emulation(tmp_path):
    host = str(platforms.host())
    assert build.unbuildable_platforms([host], binfmt_dir=binfmt(tmp_path)) == []


def test_foreign_platform_needs_an_enabled_handler(tmp_path, monkeypatch):
    monkeypatch.setattr(platforms, "host", lambda: platforms.parse("linux/amd64"))
    wanted = ["linux/amd64", "linux/arm64", "linux/arm/v7"]
    assert build.unbuildable_platforms(wanted, binfmt_dir=binfmt(tmp_path)) == ["linux/arm64", "linux/arm/v7"]
    assert build.unbuildable_platforms(wanted, binfmt_dir=binfmt(tmp_path, aarch64="disabled", arm="enabled")) == [
        "linux/arm64"]
    assert build.unbuildable_platforms(wanted, binfmt_dir=binfmt(tmp_path, aarch64="enabled")) == []


def test_created_timestamp_is_rfc3339_utc():
    assert build.created_timestamp(1704067200) == "2024-01-01T00:00:00Z"
