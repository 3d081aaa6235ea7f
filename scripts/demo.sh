#!/usr/bin/env bash
# The main job end to end on the embedded default (local registry, generated dev signing key):
# seed upstreams -> pin digests (drift --update) -> validate -> render -> publish -> verify.
# Runs in a scratch copy of demo/ so that the repository's own files are never touched.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
FACTORY="$ROOT/.venv/bin/factory"
STATE=${FACTORY_STATE:-/var/lib/factory}
WS=$STATE/demo
export FACTORY_STATE=$STATE

say() { printf '\n==> %s\n' "$*"; }

say "workspace $WS (a copy of demo/)"
rm -rf "$WS"
cp -r "$ROOT/demo" "$WS"
cd "$WS"
git init -q
git config user.name "factory demo"
git config user.email "demo@factory.invalid"
git add -A && git commit -qm "demo manifests"

say "toolchain and services"
"$FACTORY" doctor

say "seed upstream images and the scanner's database into the local registry (no Docker Hub here)"
"$FACTORY" seed debian noshell trivy-db >seeded.json
grep '"ref"' seeded.json
debian_ref=$(python3 -c 'import json; print(next(s["ref"] for s in json.load(open("seeded.json")) if s["name"] == "debian"))')
sed -i "s|^helper_image: .*|helper_image: $debian_ref|" factory.yaml
git commit -qam "pin the helper image"

# The stand-in database's CRITICAL advisory (CVE-2099-0001 in dpkg, invented) is waived as not_affected: the
# publish states it as signed OpenVEX on each image, and the catalog shows it waived. Dated from today so
# the demo never runs on an expired waiver.
cat >vuln-ignore.yaml <<YAML
ignores:
  - id: CVE-2099-0001
    reason: invented advisory of the demo's stand-in database; dpkg never runs in a deployed container
    expires: $(date -u -d '+90 days' +%F)
    status: not_affected
    justification: vulnerable_code_not_in_execute_path
YAML
git add vuln-ignore.yaml && git commit -qm "waive the stand-in database's invented CVE-2099-0001"

say "pin upstream digests: factory drift --update --commit (exit 3 = something drifted)"
rc=0; "$FACTORY" drift --update --commit || rc=$?
[ "$rc" = 0 ] || [ "$rc" = 3 ] || exit "$rc"

say "validate manifests and policy"
"$FACTORY" validate

say "render build contexts"
"$FACTORY" render
git add -A && git commit -qm "render" || true

say "publish: build 2 platforms, test, gate, push by digest, sign, attest, tag"
"$FACTORY" publish --all --report "$WS/report.json"

say "verify what app teams pull"
for name in debian-12-minbase debian-12-python static-noshell; do
  "$FACTORY" verify "127.0.0.1:5000/myorg/base:$name-v1.0"
done

say "rescan the current versions with today's database, without rebuilding (the nightly does this)"
"$FACTORY" scan

say "catalog for app teams: every image, version, changelog; the FROM line to pin"
"$FACTORY" catalog --out "$WS/catalog"
echo "catalog: $WS/catalog/index.html (open it in a browser; catalog.json beside it)"

cat <<MSG

Done. Where to look:
  report         $WS/report.json
  catalog        $WS/catalog/index.html
  tags           curl -s http://127.0.0.1:5000/v2/myorg/base/tags/list
  public key     $STATE/keys/cosign.pub (cosign itself is at $STATE/tools/bin/cosign)
Each 'factory verify' above ends with the plain cosign commands that check the same; for example:
  cosign verify --key $STATE/keys/cosign.pub --insecure-ignore-tlog=true --allow-http-registry \\
    127.0.0.1:5000/myorg/base:debian-12-minbase-v1.0
SBOMs are attested per platform: verify them on the platform digests that 'factory verify' lists.
MSG
