from factory.render import plan
from factory.render.contexts import digest_files


def write(folder, files):
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def test_context_digest_splits_prod_and_debug_like_the_renderer(tmp_path):
    write(tmp_path, {"Dockerfile": b"FROM a\n", "factory-context.json": b"{}", "debug/Dockerfile": b"FROM b\n"})
    assert plan.context_digest(tmp_path) == digest_files({"Dockerfile": b"FROM a\n", "factory-context.json": b"{}"})
    assert plan.context_digest(tmp_path, "debug") == digest_files({"Dockerfile": b"FROM b\n"})


def test_a_debug_only_change_leaves_the_prod_digest_alone(tmp_path):
    write(tmp_path, {"Dockerfile": b"FROM a\n", "debug/Dockerfile": b"FROM b\n"})
    before = plan.context_digest(tmp_path)
    write(tmp_path, {"debug/Dockerfile": b"FROM b\nRUN true\n"})
    assert plan.context_digest(tmp_path) == before


def fp(**over):
    args = {"context_digest": "sha256:c", "base_digest": "sha256:b", "platforms": ["linux/amd64", "linux/arm64"]}
    return plan.fingerprint(**(args | over))


def test_fingerprint_is_stable_and_order_free():
    assert fp() == fp(platforms=["linux/arm64", "linux/amd64"])
    assert fp().startswith("sha256:") and len(fp()) == 71


def test_fingerprint_changes_with_every_input():
    variants = [fp(), fp(context_digest="sha256:x"), fp(base_digest="sha256:y"), fp(platforms=["linux/amd64"]),
                fp(variant="debug")]
    assert len(set(variants)) == len(variants)
