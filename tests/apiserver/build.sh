#!/usr/bin/env bash
# Build kube-apiserver for the real_apiserver test tier and print the binary's path.
#
# The source is Debian's `kubernetes` source package (the upstream tree, vendor/ included),
# fetched with `apt-get source` into a cache keyed by the package version, and built once with
# Debian's Go through the upstream Makefile (`make WHAT=cmd/kube-apiserver`: the generated
# OpenAPI files come from make, so a plain `go build` does not work). Later runs find the cached
# binary and only print its path.
#
#   tests/apiserver/build.sh            # path of the binary, building it first if needed
#   tests/apiserver/build.sh --rebuild  # build again from the cached tree (warm Go cache)
#
# Environment:
#   ENVSYNC_APISERVER_CACHE          cache root (default /var/cache/envsync-apiserver)
#   ENVSYNC_KUBERNETES_SRC_VERSION   Debian version of the `kubernetes` source package
#
# Only the path goes to stdout; progress and errors go to stderr. Needs root (or sudo) for
# apt-get the first time; the build itself takes about 6 minutes and 1.3 GB of memory.
set -euo pipefail

readonly SRC_PACKAGE=kubernetes
readonly DEFAULT_VERSION="1.20.5+really1.20.2-1.1+deb12u1"
readonly APT_PACKAGES=(golang-go golang-github-modern-go-reflect2-dev make dpkg-dev rsync jq)
# reflect2 1.0.1, as vendored by Kubernetes 1.20, links to reflect.mapiterinit with its pre-1.18
# signature, which breaks map iteration (json-iterator) under Go >= 1.18; Debian's 1.0.2 has
# the fix and the same API.
readonly REFLECT2_SRC=/usr/share/gocode/src/github.com/modern-go/reflect2
readonly SOURCES_FILE=/etc/apt/sources.list.d/envsync-src.sources
# go-openapi's type validator (vendored twice) takes "" for null under Go >= 1.16, which makes
# the server refuse `default: ""` in a CRD schema and "" in a custom resource (upstream
# kubernetes#99804, fixed in kube-openapi#230 by dropping the zero-value test).
declare -rx ZERO_CHECK='data == nil || reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data))'
readonly ZERO_PATCHED=(
	vendor/k8s.io/kube-openapi/pkg/validation/validate/type.go
	vendor/github.com/go-openapi/validate/type.go
)
# Bumped whenever the patches above change, so that a cached binary of an older recipe is
# rebuilt (warm) rather than reused.
readonly RECIPE=2

version="${ENVSYNC_KUBERNETES_SRC_VERSION:-$DEFAULT_VERSION}"
cache_root="${ENVSYNC_APISERVER_CACHE:-/var/cache/envsync-apiserver}"
version_dir="$cache_root/$version"
binary="$version_dir/bin-r$RECIPE/kube-apiserver"
rebuild=false

log() { printf 'build.sh: %s\n' "$*" >&2; }
die() {
	printf 'build.sh: error: %s\n' "$*" >&2
	exit 1
}

case "${1:-}" in
"") ;;
--rebuild) rebuild=true ;;
-h | --help)
	sed -n '2,18s/^# \{0,1\}//p' "$0"
	exit 0
	;;
*) die "unknown argument '$1' (expected nothing or --rebuild)" ;;
esac

# The fast path: nothing to do but print the cached binary.
if [[ $rebuild == false && -x $binary ]]; then
	printf '%s\n' "$binary"
	exit 0
fi

as_root=()
if [[ $(id -u) -ne 0 ]]; then
	command -v sudo >/dev/null || die "not root and no sudo: cannot install build tools with apt-get"
	as_root=(sudo)
fi

mkdir -p "$cache_root" || die "cannot create the cache root $cache_root (set ENVSYNC_APISERVER_CACHE)"
exec 9>"$cache_root/.lock"
if ! flock --nonblock 9; then
	log "another build holds $cache_root/.lock; waiting for it"
	flock 9
fi
if [[ $rebuild == false && -x $binary ]]; then # built by whoever held the lock
	printf '%s\n' "$binary"
	exit 0
fi

# ------------------------------------------------------------------------------ apt: tools, source

apt_updated=false
apt_update() {
	if [[ $apt_updated == false ]]; then
		log "apt-get update"
		"${as_root[@]}" apt-get update -q >&2 || die "apt-get update failed"
		apt_updated=true
	fi
}

add_deb_src() {
	[[ -e $SOURCES_FILE ]] && return 0
	local codename uris="http://deb.debian.org/debian"
	codename=$(sed -n 's/^VERSION_CODENAME=//p' /etc/os-release 2>/dev/null | tr -d '"')
	[[ -n $codename ]] || die "cannot tell the Debian release from /etc/os-release"
	if [[ -r /etc/apt/sources.list.d/debian.sources ]]; then
		uris=$(awk '$1 == "URIs:" { print $2; exit }' /etc/apt/sources.list.d/debian.sources)
	fi
	log "adding deb-src for $codename main ($SOURCES_FILE)"
	printf '%s\n' \
		"Types: deb-src" \
		"URIs: $uris" \
		"Suites: $codename" \
		"Components: main" \
		"Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" |
		"${as_root[@]}" tee "$SOURCES_FILE" >/dev/null || die "cannot write $SOURCES_FILE"
	apt_updated=false
}

source_known() {
	apt-cache showsrc "$SRC_PACKAGE" 2>/dev/null | grep -qx "Version: $version"
}

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
	apt_update
	log "apt-get install ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -q --no-install-recommends \
		"${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed"
fi
[[ -d $REFLECT2_SRC ]] || die "$REFLECT2_SRC is missing (golang-github-modern-go-reflect2-dev)"

src_parent="$version_dir/src"
if [[ ! -e $src_parent/.unpacked ]]; then
	if ! source_known; then
		add_deb_src
		apt_update
	fi
	if ! source_known; then
		available=$(apt-cache showsrc "$SRC_PACKAGE" 2>/dev/null | sed -n 's/^Version: //p' |
			sort -rV | xargs)
		if [[ -n ${ENVSYNC_KUBERNETES_SRC_VERSION:-} || -z $available ]]; then
			die "apt knows no source package $SRC_PACKAGE=$version (available: ${available:-none});" \
				"set ENVSYNC_KUBERNETES_SRC_VERSION to one of these"
		fi
		# The pinned default left the archive (a stable update replaced it): take the newest.
		version="${available%% *}"
		log "$SRC_PACKAGE=$DEFAULT_VERSION is no longer in the archive; using $version"
		version_dir="$cache_root/$version"
		binary="$version_dir/bin-r$RECIPE/kube-apiserver"
		src_parent="$version_dir/src"
		if [[ $rebuild == false && -x $binary ]]; then
			printf '%s\n' "$binary"
			exit 0
		fi
	fi
fi
if [[ ! -e $src_parent/.unpacked ]]; then
	log "fetching source package $SRC_PACKAGE=$version into $src_parent"
	rm -rf "$src_parent"
	mkdir -p "$src_parent"
	(cd "$src_parent" && apt-get source -q "$SRC_PACKAGE=$version" >&2) ||
		die "apt-get source $SRC_PACKAGE=$version failed"
	rm -f "$src_parent"/*.tar.* "$src_parent"/*.dsc
	touch "$src_parent/.unpacked"
fi

tree=""
for candidate in "$src_parent"/"$SRC_PACKAGE"-*/; do
	if [[ -f $candidate/Makefile && -d $candidate/vendor ]]; then tree="${candidate%/}"; fi
done
[[ -n $tree ]] || die "no unpacked $SRC_PACKAGE tree with a Makefile and vendor/ under $src_parent"

# ------------------------------------------------------------------------------------------ build

log "replacing vendored reflect2 with Debian's ($(dpkg-query -W -f='${Version}' golang-github-modern-go-reflect2-dev))"
rsync -a --delete --exclude '*_test.go' "$REFLECT2_SRC/" "$tree/vendor/github.com/modern-go/reflect2/"

for file in "${ZERO_PATCHED[@]}"; do
	if grep -qF "$ZERO_CHECK" "$tree/$file"; then
		log "patching the zero-value check out of $file"
		perl -pi -e 's/\Q$ENV{ZERO_CHECK}\E/data == nil/' "$tree/$file"
	fi
	! grep -qF "$ZERO_CHECK" "$tree/$file" || die "could not patch $file"
	grep -q 'if data == nil {' "$tree/$file" || die "$file has neither the old nor the patched check"
done

# The upstream scripts pin GOCACHE to _output/local/go/cache; point that at the cache root so
# the Go build cache outlives the tree (a new package version rebuilds warm).
mkdir -p "$cache_root/go-build" "$tree/_output/local/go"
if [[ ! -L $tree/_output/local/go/cache ]]; then
	rm -rf "$tree/_output/local/go/cache"
	ln -s "$cache_root/go-build" "$tree/_output/local/go/cache"
fi

build_log="$version_dir/build.log"
log "building kube-apiserver with $(go version | cut -d' ' -f3) (log: $build_log)"
started=$SECONDS
if ! (cd "$tree" && env CGO_ENABLED=0 HOME="$version_dir" make WHAT=cmd/kube-apiserver) \
	>"$build_log" 2>&1; then
	tail -n 40 "$build_log" >&2
	die "make WHAT=cmd/kube-apiserver failed (full log: $build_log)"
fi
log "built in $((SECONDS - started)) s"

built="$tree/_output/bin/kube-apiserver"
[[ -x $built ]] || die "make succeeded but $built is missing"
reported=$("$built" --version 2>&1) || die "$built --version failed: $reported"
log "$reported"

mkdir -p "$(dirname "$binary")"
cp "$built" "$binary.tmp"
mv -f "$binary.tmp" "$binary"
for old in "$version_dir"/bin "$version_dir"/bin-r*; do # binaries of older recipes
	if [[ -e $old && $old != "$(dirname "$binary")" ]]; then rm -rf "$old"; fi
done
printf '%s\n' "$binary"
