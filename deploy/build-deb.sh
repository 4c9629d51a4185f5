#!/usr/bin/env bash
# Builds a Debian package of this checkout: dist/nicproxy_VERSION_ARCH.deb.
#   VERSION=1.0.0 deploy/build-deb.sh        (OUT=dir to put it elsewhere)
# The binary is static (CGO_ENABLED=0); the maintainer scripts use
# init-system-helpers, as debhelper's would. The man page is built from
# deploy/nicproxy.1.md with go-md2man (fetched by `go run` from the module
# proxy, so the module itself depends on nothing new). SOURCE_DATE_EPOCH,
# when set, dates the changelog, so two builds of one commit are alike.
set -euo pipefail
cd "$(dirname "$0")/.."

version=${VERSION:-0.1.0}
arch=$(go env GOARCH) # Go's amd64, arm64, 386 are Debian's names too
out=${OUT:-dist}
maintainer="nicproxy maintainers <maintainers@nicproxy.invalid>"
md2man=github.com/cpuguy83/go-md2man/v2@v2.0.7
root=$(mktemp -d)
chmod 0755 "$root" # the package's ./ becomes /: never let it say 0700
trap 'rm -rf "$root"' EXIT
doc="$root/usr/share/doc/nicproxy"

CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$version" \
	-o "$root/usr/bin/nicproxy" ./cmd/nicproxy
# /usr/lib, not /lib: merged-/usr Debian aliases them, and dpkg wants one.
install -D -m 0644 deploy/nicproxy.service "$root/usr/lib/systemd/system/nicproxy.service"
# The source rule for the kernel's own packets (resets for sockets that are
# gone): a oneshot per NIC with CAP_NET_ADMIN alone, not enabled; nicproxy
# stays unprivileged.
install -D -m 0644 deploy/nicproxy-source-rule@.service "$root/usr/lib/systemd/system/nicproxy-source-rule@.service"
install -D -m 0755 deploy/nicproxy-source-rule "$root/usr/lib/nicproxy/nicproxy-source-rule"
install -D -m 0644 configs/default.yaml "$root/etc/nicproxy/config.yaml"
install -D -m 0644 deploy/README.Debian "$doc/README.Debian"
for example in two-nic per-user failover; do
	install -D -m 0644 "configs/$example.yaml" "$doc/examples/$example.yaml"
done

# lintian exempts Go binaries from statically-linked-binary only when it
# sees the source package's golang-go build dependency; this package is
# built straight from the tree, so it says the same in an override.
install -D -m 0644 /dev/stdin "$root/usr/share/lintian/overrides/nicproxy" <<'OVERRIDES'
# A Go binary, static by design (CGO_ENABLED=0): it runs on any Linux
# without a C library.
nicproxy: statically-linked-binary [usr/bin/nicproxy]
OVERRIDES

mkdir -p "$root/usr/share/man/man1"
go run "$md2man" -in deploy/nicproxy.1.md -out "$root/usr/share/man/man1/nicproxy.1"
gzip -9n "$root/usr/share/man/man1/nicproxy.1"

# Machine-readable copyright: nicproxy's own licence, and those of the Go
# modules linked into the static binary, read from the build's module list.
{
	cat <<'HEAD'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: nicproxy
Upstream-Contact: nicproxy maintainers <maintainers@nicproxy.invalid>
Comment: /usr/bin/nicproxy is a static Go binary. Besides nicproxy it holds
 the Go standard library (BSD-3-clause, Copyright The Go Authors) and these
 modules, each under the licence named:
HEAD
	dirs=$(go list -m -f '{{.Path}} {{.Dir}}' all)
	go version -m "$root/usr/bin/nicproxy" | awk '$1 == "dep" { print $2, $3 }' | while read -r mod ver; do
		dir=$(echo "$dirs" | awk -v m="$mod" '$1 == m { print $2 }')
		text=$(cat "$dir"/LICENSE* "$dir"/COPYING* 2>/dev/null || true)
		case "$text" in
		*"two different licenses"*) lic="Expat and Apache-2.0" ;;
		*"Apache License"*) lic="Apache-2.0" ;;
		*"Permission is hereby granted"*) lic="Expat" ;;
		*"Redistribution and use"*) lic="BSD-3-clause" ;;
		*) echo "build-deb.sh: cannot tell the licence of $mod $ver" >&2; exit 1 ;;
		esac
		echo " $mod $ver: $lic"
	done
	cat <<'BODY'

Files: *
Copyright: 2026 The nicproxy authors
License: Expat

License: Expat
BODY
	sed -n '/^Permission/,$p' LICENSE | sed 's/^$/./; s/^/ /'
	cat <<'BODY'

License: Apache-2.0
 On Debian systems the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.

License: BSD-3-clause
 Redistribution and use in source and binary forms, with or without
 modification, are permitted provided that the following conditions are
 met:
 .
 * Redistributions of source code must retain the above copyright notice,
 this list of conditions and the following disclaimer.
 * Redistributions in binary form must reproduce the above copyright notice,
 this list of conditions and the following disclaimer in the documentation
 and/or other materials provided with the distribution.
 * Neither the name of the copyright holder nor the names of its
 contributors may be used to endorse or promote products derived from this
 software without specific prior written permission.
 .
 THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS"
 AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE
 IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR PURPOSE
 ARE DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT HOLDER OR CONTRIBUTORS BE
 LIABLE FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR
 CONSEQUENTIAL DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF
 SUBSTITUTE GOODS OR SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS
 INTERRUPTION) HOWEVER CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER IN
 CONTRACT, STRICT LIABILITY, OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE)
 ARISING IN ANY WAY OUT OF THE USE OF THIS SOFTWARE, EVEN IF ADVISED OF THE
 POSSIBILITY OF SUCH DAMAGE.
BODY
} >"$doc/copyright"

# The package is native (the version has no Debian revision), so its one
# changelog is changelog.gz; a -N revision makes it changelog.Debian.gz.
changelog=changelog.gz
case "$version" in *-*) changelog=changelog.Debian.gz ;; esac
date=$(date -u -R -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}")
printf 'nicproxy (%s) unstable; urgency=medium\n\n  * Package built from the nicproxy source tree.\n\n -- %s  %s\n' \
	"$version" "$maintainer" "$date" | gzip -9n >"$doc/$changelog"

mkdir -p "$root/DEBIAN"
# iproute2 is recommended, not required: only the source-rule script (ip
# rule, ip route) needs it, and Debian installs recommends by default.
cat >"$root/DEBIAN/control" <<CONTROL
Package: nicproxy
Version: $version
Architecture: $arch
Maintainer: $maintainer
Depends: init-system-helpers (>= 1.54~)
Recommends: iproute2
Section: net
Priority: optional
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Description: local SOCKS5/SOCKS4a/HTTP proxy that pins connections to a NIC
 On a host with several NICs on one subnet the kernel sends everything
 through the lowest route metric. nicproxy dials each upstream connection
 through a socket bound to a chosen NIC (SO_BINDTODEVICE), with YAML rules
 by destination, domain, port, client, listener and user.
CONTROL
echo /etc/nicproxy/config.yaml >"$root/DEBIAN/conffiles"
# The maintainer scripts are what dh_installsystemd writes for a unit that
# is installed but not enabled (the operator reviews the config first),
# and restarted on upgrade so the new binary takes over.
cat >"$root/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ "$1" = configure ] || [ "$1" = abort-upgrade ] || [ "$1" = abort-deconfigure ] || [ "$1" = abort-remove ]; then
	deb-systemd-helper update-state nicproxy.service >/dev/null || true
	if [ -d /run/systemd/system ]; then
		systemctl --system daemon-reload >/dev/null || true
		if [ -n "$2" ]; then
			deb-systemd-invoke try-restart nicproxy.service >/dev/null || true
		fi
	fi
fi
if [ "$1" = configure ] && [ -z "$2" ]; then
	echo "nicproxy: edit /etc/nicproxy/config.yaml, then: systemctl enable --now nicproxy"
fi
POSTINST
cat >"$root/DEBIAN/prerm" <<'PRERM'
#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
	deb-systemd-invoke stop nicproxy.service >/dev/null || true
fi
PRERM
cat >"$root/DEBIAN/postrm" <<'POSTRM'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
	systemctl --system daemon-reload >/dev/null || true
fi
if [ "$1" = purge ] && command -v deb-systemd-helper >/dev/null; then
	deb-systemd-helper purge nicproxy.service >/dev/null || true
fi
POSTRM
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"
# md5sums lets `dpkg --verify nicproxy` find a changed file.
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"

mkdir -p "$out"
dpkg-deb --root-owner-group --build "$root" "$out/nicproxy_${version}_${arch}.deb" >/dev/null
echo "$out/nicproxy_${version}_${arch}.deb"
