#!/usr/bin/env bash
# Builds a Debian package of this checkout: dist/nicproxy_VERSION_ARCH.deb.
#   VERSION=1.0.0 deploy/build-deb.sh        (OUT=dir to put it elsewhere)
# The binary is static (CGO_ENABLED=0), so the package depends on nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

version=${VERSION:-0.1.0}
arch=$(go env GOARCH) # Go's amd64, arm64, 386 are Debian's names too
out=${OUT:-dist}
root=$(mktemp -d)
chmod 0755 "$root" # the package's ./ becomes /: never let it say 0700
trap 'rm -rf "$root"' EXIT

CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$version" \
	-o "$root/usr/bin/nicproxy" ./cmd/nicproxy
# /usr/lib, not /lib: merged-/usr Debian aliases them, and dpkg wants one.
install -D -m 0644 deploy/nicproxy.service "$root/usr/lib/systemd/system/nicproxy.service"
install -D -m 0644 configs/default.yaml "$root/etc/nicproxy/config.yaml"
install -D -m 0644 README.md "$root/usr/share/doc/nicproxy/README.md"
install -D -m 0644 deploy/README.md "$root/usr/share/doc/nicproxy/systemd.md"
install -D -m 0644 configs/two-nic.yaml "$root/usr/share/doc/nicproxy/examples/two-nic.yaml"
install -D -m 0644 configs/per-user.yaml "$root/usr/share/doc/nicproxy/examples/per-user.yaml"
install -D -m 0644 configs/failover.yaml "$root/usr/share/doc/nicproxy/examples/failover.yaml"

mkdir -p "$root/DEBIAN"
cat >"$root/DEBIAN/control" <<CONTROL
Package: nicproxy
Version: $version
Architecture: $arch
Maintainer: nicproxy maintainers <maintainers@nicproxy.invalid>
Section: net
Priority: optional
Installed-Size: $(du -sk "$root" | cut -f1)
Description: local SOCKS5/SOCKS4a/HTTP proxy that pins connections to a NIC
 On a host with several NICs on one subnet the kernel sends everything
 through the lowest route metric. nicproxy dials each upstream connection
 through a socket bound to a chosen NIC (SO_BINDTODEVICE), with YAML rules
 by destination, domain, port, client, listener and user.
CONTROL
echo /etc/nicproxy/config.yaml >"$root/DEBIAN/conffiles"
# The unit is installed, not enabled: the user reviews the config first.
# An upgrade restarts a running service, so the new binary takes over.
cat >"$root/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
	if [ "$1" = configure ] && [ -z "$2" ]; then
		echo "nicproxy: edit /etc/nicproxy/config.yaml, then: systemctl enable --now nicproxy"
	elif [ "$1" = configure ]; then
		systemctl try-restart nicproxy.service || true
	fi
fi
POSTINST
cat >"$root/DEBIAN/prerm" <<'PRERM'
#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
	systemctl stop nicproxy.service || true
fi
PRERM
cat >"$root/DEBIAN/postrm" <<'POSTRM'
#!/bin/sh
set -e
if [ "$1" = purge ]; then
	rm -f /etc/systemd/system/multi-user.target.wants/nicproxy.service
fi
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
POSTRM
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"

mkdir -p "$out"
dpkg-deb --root-owner-group --build "$root" "$out/nicproxy_${version}_${arch}.deb" >/dev/null
echo "$out/nicproxy_${version}_${arch}.deb"
