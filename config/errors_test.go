package config

import (
	"errors"
	"strings"
	"testing"
)

// hostOpts is the spec's two-NIC host.
func hostOpts() Options {
	return Options{Interfaces: []string{"ens33", "ens160"}, DefaultRouteInterface: "ens33"}
}

// goodHash is a real bcrypt hash (cost 10) of "s3cret".
const goodHash = "$2a$10$LqANrGOWx5yOnBRYVrCtjeU9ic0qG3ekNsc8x4FBmfVw6fbSOiK/q"

// TestParseErrors pins the exact text of every class of configuration
// error: position, field path and message are the user interface.
func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		opts *Options // nil: hostOpts()
		want string
	}{
		{"unknown top-level key", "listenn: []\n",
			nil, `config.yaml:1:1: listenn: unknown field (want one of: listen, admin, interfaces, local_destinations, users, allow, resolver, rules, default, timeouts, limits, log)`},
		{"unknown rule key", "rules:\n  - name: a\n    via: ens33\n  - name: b\n    via: ens33\n  - via: ens33\n    dstt: [10.0.0.0/8]\n",
			nil, `config.yaml:7:5: rules[2].dstt: unknown field (want one of: name, dst, domain, port, src, user, listener, unit, cgroup, uid, program, network, via, action)`},
		{"unit without a suffix", "rules:\n  - unit: [apt-daily]\n    via: ens33\n",
			nil, `config.yaml:2:12: rules[0].unit: "apt-daily": want a unit ending in .service or .scope (such as apt-daily.service)`},
		{"unit given as a path", "rules:\n  - unit: [/system.slice/a.service]\n    via: ens33\n",
			nil, `config.yaml:2:12: rules[0].unit: "/system.slice/a.service": a unit name has no '/' or spaces (cgroup paths go under cgroup)`},
		{"empty unit list", "rules:\n  - unit: []\n    via: ens33\n",
			nil, `config.yaml:2:11: rules[0].unit: empty list; remove the field to match any unit`},
		{"relative cgroup", "rules:\n  - cgroup: [system.slice/a.service]\n    via: ens33\n",
			nil, `config.yaml:2:14: rules[0].cgroup: "system.slice/a.service": want an absolute cgroup path such as /system.slice/restic.service`},
		{"unclean cgroup", "rules:\n  - cgroup: [/system.slice//a.service/]\n    via: ens33\n",
			nil, `config.yaml:2:14: rules[0].cgroup: "/system.slice//a.service/": write it as /system.slice/a.service`},
		{"cgroup with its mount point", "rules:\n  - cgroup: [/sys/fs/cgroup/system.slice]\n    via: ens33\n",
			nil, `config.yaml:2:14: rules[0].cgroup: "/sys/fs/cgroup/system.slice": give the path inside the cgroup hierarchy, without its mount point (/system.slice)`},
		{"uid by name", "rules:\n  - uid: [backup]\n    via: ens33\n",
			nil, "config.yaml:2:11: rules[0].uid: \"backup\" is not a numeric user id (find it with `id -u backup`)"},
		{"uid out of range", "rules:\n  - uid: [4294967295]\n    via: ens33\n",
			nil, `config.yaml:2:11: rules[0].uid: "4294967295": a user id is 0-4294967294`},
		{"negative uid", "rules:\n  - uid: [-1]\n    via: ens33\n",
			nil, `config.yaml:2:11: rules[0].uid: "-1": a user id is 0-4294967294`},
		{"program with a directory", "rules:\n  - program: [/usr/bin/curl]\n    via: ens33\n",
			nil, `config.yaml:2:15: rules[0].program: "/usr/bin/curl": give the program's file name without its directory (curl)`},
		{"program as a map", "rules:\n  - program: {name: curl}\n    via: ens33\n",
			nil, `config.yaml:2:14: rules[0].program: want a list, got a mapping`},
		{"unknown interface option", "interfaces:\n  ens160:\n    dnss: [1.1.1.1]\n",
			nil, `config.yaml:3:5: interfaces.ens160.dnss: unknown field (want one of: source, mark, dns, check)`},
		{"loopback check target", "interfaces:\n  ens160:\n    check: {target: \"127.0.0.1:53\"}\n",
			nil, `config.yaml:3:21: interfaces.ens160.check.target: "127.0.0.1:53" is on loopback, which no NIC reaches; check something beyond the NIC, such as its gateway`},
		{"unknown interface in via", "rules:\n  - dst: [10.0.0.0/8]\n    via: ens16O\n",
			nil, `config.yaml:3:10: rules[0].via: unknown interface "ens16O" (have: ens33, ens160)`},
		{"unknown resolver.via", "resolver: {via: ens16O}\n",
			nil, `config.yaml:1:17: resolver.via: unknown interface "ens16O" (have: ens33, ens160)`},
		{"negative cache_size", "resolver: {cache_size: -1}\n",
			nil, `config.yaml:1:24: resolver.cache_size: -1: must be 0 (no cache) or more`},
		{"negative min_ttl", "resolver: {min_ttl: -1s}\n",
			nil, `config.yaml:1:21: resolver.min_ttl: "-1s" is not a duration of 0s or more (such as 0s, 30s or 1m)`},
		{"min_ttl over max_ttl", "resolver: {min_ttl: 1h, max_ttl: 1m}\n",
			nil, `config.yaml:1:21: resolver.min_ttl: 1h0m0s is more than max_ttl 1m0s`},
		{"zero attempt", "timeouts: {attempt: 0s}\n",
			nil, `config.yaml:1:21: timeouts.attempt: 0s: must be greater than 0`},
		{"unknown interface in default", "default: eth0\n",
			nil, `config.yaml:1:10: default: unknown interface "eth0" (have: ens33, ens160)`},
		{"unknown interface in failover list", "rules:\n  - dst: [10.0.0.0/8]\n    via: [ens160, ens16O]\n",
			nil, `config.yaml:3:19: rules[0].via: unknown interface "ens16O" (have: ens33, ens160)`},
		{"unknown interface in default list", "default:\n  - ens160\n  - wlan0\n",
			nil, `config.yaml:3:5: default: unknown interface "wlan0" (have: ens33, ens160)`},
		{"unknown interface in balance", "rules:\n  - port: [80]\n    via:\n      balance: [ens33, ens999]\n",
			nil, `config.yaml:4:24: rules[0].via.balance: unknown interface "ens999" (have: ens33, ens160)`},
		{"bad CIDR", "rules:\n  - dst: [10.0.0.0/33]\n    via: ens33\n",
			nil, `config.yaml:2:11: rules[0].dst: "10.0.0.0/33" is not an IP address or CIDR`},
		{"name in dst", "rules:\n  - dst: example.com\n    via: ens33\n",
			nil, `config.yaml:2:10: rules[0].dst: "example.com" is not an IP address or CIDR; names go under domain`},
		{"bad IP in allow", "allow: [127.0.0.1, 10.0.0.256]\n",
			nil, `config.yaml:1:20: allow: "10.0.0.256" is not an IP address or CIDR`},
		{"port out of range", "rules:\n  - port: [443, 70000]\n    via: ens33\n",
			nil, `config.yaml:2:17: rules[0].port: port 70000 is out of range 1-65535 (want a port or a range such as 8000-8999)`},
		{"port range reversed", "rules:\n  - port: [\"8999-8000\"]\n    via: ens33\n",
			nil, `config.yaml:2:12: rules[0].port: range "8999-8000" is reversed; write 8000-8999`},
		{"port range not numeric", "rules:\n  - port: [8000-90x]\n    via: ens33\n",
			nil, `config.yaml:2:12: rules[0].port: range "8000-90x": port "90x" is not a number 1-65535`},
		{"bad duration", "timeouts:\n  idle: 5 minutes\n",
			nil, `config.yaml:2:9: timeouts.idle: "5 minutes" is not a duration (want a number with a unit, such as 10s, 500ms or 5m)`},
		{"duration without unit", "timeouts: {dial: 10}\n",
			nil, `config.yaml:1:18: timeouts.dial: "10" is not a duration (want a number with a unit, such as 10s, 500ms or 5m)`},
		{"zero duration", "timeouts:\n  shutdown: 0s\n",
			nil, `config.yaml:2:13: timeouts.shutdown: 0s: must be greater than 0`},
		{"negative duration", "interfaces:\n  ens160:\n    check: {target: \"192.168.3.1:53\", interval: -5s}\n",
			nil, `config.yaml:3:49: interfaces.ens160.check.interval: -5s: must be greater than 0`},
		{"bad protocol", "listen:\n  - addr: 127.0.0.1:1080\n    protocol: socks4\n",
			nil, `config.yaml:3:15: listen[0].protocol: unknown protocol "socks4" (want one of: mixed, socks5, http)`},
		{"listen addr without port", "listen:\n  - addr: 127.0.0.1\n",
			nil, `config.yaml:2:11: listen[0].addr: "127.0.0.1": want IP:port, such as 127.0.0.1:1080 or [::1]:1080`},
		{"listen v6 without brackets", "listen:\n  - addr: \"::1:1080\"\n",
			nil, `config.yaml:2:11: listen[0].addr: "::1:1080": want IP:port, such as 127.0.0.1:1080 or [::1]:1080`},
		{"listen host name", "listen:\n  - addr: proxy.example.com:1080\n",
			nil, `config.yaml:2:11: listen[0].addr: "proxy.example.com:1080": "proxy.example.com" is not an IP address (the only name allowed is localhost)`},
		{"listen port 0", "listen:\n  - addr: 127.0.0.1:0\n",
			nil, `config.yaml:2:11: listen[0].addr: "127.0.0.1:0": port 0 is not a fixed port; give one 1-65535`},
		{"listen missing addr", "listen:\n  - protocol: http\n",
			nil, `config.yaml:2:5: listen[0]: needs addr`},
		{"duplicate listener addr", "listen:\n  - addr: 127.0.0.1:1080\n  - addr: localhost:1080\n    name: other\n",
			nil, `config.yaml:3:11: listen[1].addr: localhost:1080 is already used by 127.0.0.1:1080`},
		{"overlapping listener addr", "allow: [10.0.0.0/8]\nlisten:\n  - addr: 127.0.0.1:1080\n  - addr: \":1080\"\n",
			nil, `config.yaml:4:11: listen[1].addr: :1080 overlaps 127.0.0.1:1080 (a wildcard address takes the port on every address)`},
		{"duplicate listener name", "listen:\n  - {name: a, addr: 127.0.0.1:1080}\n  - {name: a, addr: 127.0.0.1:1081}\n",
			nil, `config.yaml:3:12: listen[1].name: duplicate listener name "a" (also listen[0])`},
		{"admin clashes with listener", "admin: {addr: 127.0.0.1:1080}\n",
			nil, `config.yaml:1:15: admin.addr: 127.0.0.1:1080 is already used by 127.0.0.1:1080`},
		{"unknown listener ref", "listen:\n  - {name: web, addr: 127.0.0.1:8080}\nrules:\n  - listener: [browser]\n    via: ens160\n",
			nil, `config.yaml:4:16: rules[0].listener: unknown listener "browser" (have: web)`},
		{"unknown user ref", "users:\n  - {name: alice, password: x}\nrules:\n  - user: [alice, bob]\n    via: ens160\n",
			nil, `config.yaml:4:19: rules[0].user: unknown user "bob" (have: alice)`},
		{"user with password and hash", "users:\n  - name: alice\n    password: x\n    password_hash: \"" + goodHash + "\"\n",
			nil, `config.yaml:2:5: users[0]: has both password and password_hash; keep one`},
		{"user without password", "users:\n  - name: alice\n",
			nil, `config.yaml:2:5: users[0]: needs password or password_hash`},
		{"user without name", "users:\n  - password: x\n",
			nil, `config.yaml:2:5: users[0]: needs name`},
		{"duplicate user", "users:\n  - {name: alice, password: x}\n  - {name: alice, password: y}\n",
			nil, `config.yaml:3:12: users[1].name: duplicate user "alice" (also users[0])`},
		{"user name with colon", "users:\n  - {name: \"a:b\", password: x}\n",
			nil, `config.yaml:2:12: users[0].name: "a:b": a user name cannot contain ':' (HTTP Basic auth splits at the first ':')`},
		{"bad bcrypt hash", "users:\n  - name: bob\n    password_hash: \"$2y$10$tooshort\"\n",
			nil, "config.yaml:3:20: users[0].password_hash: not a bcrypt hash: want $2a$, $2b$ or $2y$, a two-digit cost, $, and 53 characters (60 in all); make one with `nicproxy hash-password`"},
		{"bcrypt cost out of range", "users:\n  - name: bob\n    password_hash: \"$2b$03$" + goodHash[7:] + "\"\n",
			nil, `config.yaml:3:20: users[0].password_hash: not a usable bcrypt hash: crypto/bcrypt: cost 3 is outside allowed inclusive range 4..31`},
		{"rule with via and action", "rules:\n  - port: [25]\n    via: ens33\n    action: reject\n",
			nil, `config.yaml:2:5: rules[0]: has both via and action; a rule either sends traffic via NICs or rejects it`},
		{"rule with neither via nor action", "rules:\n  - name: a\n    via: ens33\n  - name: b\n    port: [25]\n",
			nil, `config.yaml:4:5: rules[1]: needs via or action: reject`},
		{"bad action", "rules:\n  - port: [25]\n    action: drop\n",
			nil, `config.yaml:3:13: rules[0].action: unknown action "drop" (want: reject)`},
		{"bad strategy", "rules:\n  - port: [80]\n    via: {balance: [ens33, ens160], strategy: random}\n",
			nil, `config.yaml:3:47: rules[0].via.strategy: unknown strategy "random" (want one of: round-robin, least-connections, sticky)`},
		{"balance over one NIC", "default: {balance: [ens33]}\n",
			nil, `config.yaml:1:20: default.balance: needs at least 2 NICs to balance over; for one NIC write via: NIC`},
		{"balance missing", "default: {strategy: sticky}\n",
			nil, `config.yaml:1:10: default: needs balance: [NIC, NIC, ...]`},
		{"NIC twice in via", "default: [ens160, ens33, ens160]\n",
			nil, `config.yaml:1:26: default: ens160 is listed twice`},
		{"system in a failover list", "default: [ens160, system]\n",
			nil, `config.yaml:1:19: default: "system" cannot be part of a list: it would dial unpinned when a NIC fails; use it alone`},
		{"empty via list", "rules:\n  - port: [80]\n    via: []\n",
			nil, `config.yaml:3:10: rules[0].via: empty list; want a NIC, a list of NICs (failover), "system" or {balance: [NIC, NIC], strategy: ...}`},
		{"bad network", "rules:\n  - network: icmp\n    via: ens33\n",
			nil, `config.yaml:2:14: rules[0].network: unknown network "icmp" (want one of: tcp, udp)`},
		{"bad mark", "interfaces:\n  ens160:\n    mark: 0xZZ\n",
			nil, `config.yaml:3:11: interfaces.ens160.mark: "0xZZ": want a number 1-4294967295, decimal or 0x hex`},
		{"mark zero", "interfaces:\n  ens160: {mark: 0}\n",
			nil, `config.yaml:2:18: interfaces.ens160.mark: 0 means no mark; remove the field or pick a non-zero mark`},
		{"bad source IP", "interfaces:\n  ens160:\n    source: 192.168.3\n",
			nil, `config.yaml:3:13: interfaces.ens160.source: "192.168.3" is not an IP address`},
		{"unspecified source IP", "interfaces:\n  ens160: {source: 0.0.0.0}\n",
			nil, `config.yaml:2:20: interfaces.ens160.source: 0.0.0.0 cannot be a source address; give one of the NIC's own addresses`},
		{"bad dns", "interfaces:\n  ens160:\n    dns: [192.168.3.1, dns.example:53]\n",
			nil, `config.yaml:3:24: interfaces.ens160.dns[1]: "dns.example:53": "dns.example" is not an IP address (a resolver cannot be found by name)`},
		{"bad check target", "interfaces:\n  ens160:\n    check:\n      target: 192.168.3.1\n",
			nil, `config.yaml:4:15: interfaces.ens160.check.target: "192.168.3.1": want host:port, such as 192.168.3.1:53 or example.com:443`},
		{"check without target", "interfaces:\n  ens160:\n    check:\n      interval: 5s\n",
			nil, `config.yaml:4:7: interfaces.ens160.check: needs target (host:port to connect to through this NIC)`},
		{"bad interface name", "interfaces:\n  eth0:1: {}\n",
			nil, `config.yaml:2:3: interfaces.eth0:1: "eth0:1" is not a valid interface name (no '/', ':' or spaces)`},
		{"system declared as NIC", "interfaces:\n  system: {}\n",
			nil, `config.yaml:2:3: interfaces.system: "system" is reserved (it means "let the routing table decide") and cannot name a NIC`},
		{"open proxy", "listen:\n  - addr: 0.0.0.0:1080\n",
			nil, `config.yaml:2:11: listen[0].addr: 0.0.0.0:1080 is not a loopback address; set users or allow so it is not an open proxy`},
		{"open proxy on wildcard", "listen:\n  - addr: 127.0.0.1:1080\n  - addr: \"[::]:1081\"\n",
			nil, `config.yaml:3:11: listen[1].addr: [::]:1081 is not a loopback address; set users or allow so it is not an open proxy`},
		{"duplicate key", "default: ens33\nlog:\n  level: info\n  level: debug\n",
			nil, `config.yaml:4:3: log.level: duplicate key (first at line 3)`},
		{"mapping instead of list", "listen:\n  addr: 127.0.0.1:1080\n",
			nil, `config.yaml:2:3: listen: want a list, got a mapping`},
		{"list instead of mapping", "timeouts: [10s]\n",
			nil, `config.yaml:1:11: timeouts: want a mapping, got a list`},
		{"value instead of mapping", "admin: 127.0.0.1:9090\n",
			nil, `config.yaml:1:8: admin: want a mapping, got "127.0.0.1:9090"`},
		{"top level is a list", "- listen\n",
			nil, `config.yaml:1:1: want a mapping at the top level, got a list`},
		{"empty file", "",
			nil, `config.yaml:1:1: the file is empty; write at least a default or a rule (see configs/ for examples)`},
		{"only comments", "# nothing yet\n",
			nil, `config.yaml:1:1: the file is empty; write at least a default or a rule (see configs/ for examples)`},
		{"yaml syntax error", "default: ens33\nrules:\n  - via: [ens33\n",
			nil, `config.yaml:3:10: the [ here is never closed; add ] after its last entry`},
		{"tab indentation", "log:\n\tlevel: info\n",
			nil, `config.yaml:2:1: a tab in the indentation: YAML indents with spaces only; replace the tab with spaces lining up with the lines above`},
		{"two documents", "default: ens33\n---\ndefault: ens160\n",
			nil, `config.yaml:2:1: a second YAML document (after ---); nicproxy reads one`},
		{"bad log level", "log: {level: verbose}\n",
			nil, `config.yaml:1:14: log.level: unknown level "verbose" (want one of: debug, info, warn, error)`},
		{"bad log format", "log:\n  format: text\n",
			nil, `config.yaml:2:11: log.format: unknown format "text" (want one of: console, json)`},
		{"bad log access", "log:\n  access: yes\n",
			nil, `config.yaml:2:11: log.access: "yes": want true or false`},
		{"max_connections 0", "limits:\n  max_connections: 0\n",
			nil, `config.yaml:2:20: limits.max_connections: 0: must be at least 1`},
		{"max_connections not a number", "limits: {max_connections: lots}\n",
			nil, `config.yaml:1:27: limits.max_connections: "lots" is not a whole number`},
		{"max_handshakes 0", "limits:\n  max_handshakes: 0\n",
			nil, `config.yaml:2:19: limits.max_handshakes: 0: must be at least 1`},
		{"max_headers 0", "limits:\n  max_headers: 0\n",
			nil, `config.yaml:2:16: limits.max_headers: 0: must be at least 1`},
		{"body 0", "timeouts:\n  body: 0s\n",
			nil, `config.yaml:2:9: timeouts.body: 0s: must be greater than 0`},
		{"max_header_bytes with an ambiguous unit", "limits:\n  max_header_bytes: 64KB\n",
			nil, `config.yaml:2:21: limits.max_header_bytes: "64KB" is not a size (want bytes, or a number with KiB or MiB, such as 64KiB)`},
		{"max_header_bytes too small", "limits: {max_header_bytes: 100}\n",
			nil, `config.yaml:1:28: limits.max_header_bytes: 100: must be between 1KiB and 1MiB`},
		{"max_header_bytes too large", "limits: {max_header_bytes: 4096MiB}\n",
			nil, `config.yaml:1:28: limits.max_header_bytes: 4096MiB: must be between 1KiB and 1MiB`},
		{"local_destinations misspelt", "local_destinations: refuse\n",
			nil, `config.yaml:1:21: local_destinations: unknown value "refuse" (want one of: allow, deny)`},
		{"local_destinations as a list", "local_destinations: [deny]\n",
			nil, `config.yaml:1:21: local_destinations: want a single value, got a list`},
		{"bad domain", "rules:\n  - domain: [\"*.corp.example\"]\n    via: ens33\n",
			nil, `config.yaml:2:14: rules[0].domain: "*.corp.example": wildcards are not used; write ".corp.example" to match every name under corp.example`},
		{"IP in domain", "rules:\n  - domain: [10.1.2.3]\n    via: ens33\n",
			nil, `config.yaml:2:14: rules[0].domain: "10.1.2.3" is an IP address; put it under dst`},
		{"empty dst", "rules:\n  - dst: []\n    via: ens33\n",
			nil, `config.yaml:2:10: rules[0].dst: empty list; remove the field to match any destination`},
		{"empty rule name", "rules:\n  - {name: \"\", port: [80], via: ens33}\n",
			nil, `config.yaml:2:12: rules[0].name: cannot be empty; remove the field to call the rule rules[0]`},
		{"empty listener name", "listen:\n  - {name: '', addr: 127.0.0.1:1080}\n",
			nil, `config.yaml:2:12: listen[0].name: cannot be empty; remove the field to name the listener after its addr`},
		{"duplicate rule name", "rules:\n  - {name: x, port: [80], via: ens33}\n  - {name: x, port: [81], via: ens33}\n",
			nil, `config.yaml:3:12: rules[1].name: duplicate rule name "x" (also rules[0])`},
		{"via without value", "rules:\n  - port: [80]\n    via:\n",
			nil, `config.yaml:3:9: rules[0].via: needs a value: a NIC, a list of NICs (failover), "system" or {balance: [NIC, NIC], strategy: ...}`},
		{"no default and no default route", "rules: []\n",
			&Options{Interfaces: []string{"ens33", "ens160"}}, `config.yaml:1:1: default: not set and no NIC carries a default route; name one (or "system")`},
		{"-i unknown NIC", "default: ens33\n",
			&Options{Interfaces: []string{"ens33", "ens160"}, InterfaceOverride: "ens16O"}, `-i: unknown interface "ens16O" (have: ens33, ens160)`},
		{"-i system", "default: ens33\n",
			&Options{Interfaces: []string{"ens33", "ens160"}, InterfaceOverride: "system"}, `-i: "system" is not a NIC; -i pins every connection to one NIC`},
		{"-l bad address", "default: ens33\n",
			&Options{Interfaces: []string{"ens33"}, ListenOverride: "localhost"}, `-l: "localhost": want IP:port, such as 127.0.0.1:1080 or [::1]:1080`},
		{"-l open proxy", "default: ens33\n",
			&Options{Interfaces: []string{"ens33"}, ListenOverride: "0.0.0.0:1080"}, `-l: 0.0.0.0:1080 is not a loopback address; set users or allow so it is not an open proxy`},
		{"no NICs on host", "default: ens33\n",
			&Options{}, `config.yaml:1:10: default: unknown interface "ens33" (have: none)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := hostOpts()
			if tt.opts != nil {
				opts = *tt.opts
			}
			cfg, err := Parse("config.yaml", []byte(tt.yaml), opts)
			if err == nil {
				t.Fatalf("no error; config: %+v", cfg)
			}
			if cfg != nil {
				t.Errorf("config returned along with an error")
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("error is %T, want Errors", err)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("got\n\t%s\nwant\n\t%s", got, tt.want)
			}
		})
	}
}

// TestParseErrorsAllInOrder checks that one run reports every problem, in
// file order, not just the first one found.
func TestParseErrorsAllInOrder(t *testing.T) {
	const src = `log:
  level: loud
listen:
  - addr: 0.0.0.0:1080
rules:
  - dst: [10.0.0.0/8]
    via: ens16O
  - port: [0]
    via: [ens33, ens33]
timeouts: {idle: -1s}
bogus: 1
`
	want := strings.Join([]string{
		`config.yaml:2:10: log.level: unknown level "loud" (want one of: debug, info, warn, error)`,
		`config.yaml:4:11: listen[0].addr: 0.0.0.0:1080 is not a loopback address; set users or allow so it is not an open proxy`,
		`config.yaml:7:10: rules[0].via: unknown interface "ens16O" (have: ens33, ens160)`,
		`config.yaml:8:12: rules[1].port: port 0 is not a fixed port; give one 1-65535 (want a port or a range such as 8000-8999)`,
		`config.yaml:9:18: rules[1].via: ens33 is listed twice`,
		`config.yaml:10:18: timeouts.idle: -1s: must be greater than 0`,
		`config.yaml:11:1: bogus: unknown field (want one of: listen, admin, interfaces, local_destinations, users, allow, resolver, rules, default, timeouts, limits, log)`,
	}, "\n")
	_, err := Parse("config.yaml", []byte(src), hostOpts())
	if err == nil {
		t.Fatal("no error")
	}
	if got := err.Error(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	var es Errors
	if errors.As(err, &es) && len(es) != 7 {
		t.Errorf("got %d errors, want 7", len(es))
	}
	var e *Error
	if !errors.As(err, &e) || e.Path != "log.level" || e.Line != 2 || e.Column != 10 {
		t.Errorf("errors.As(*Error) = %+v, want the first problem", e)
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		e    Error
		want string
	}{
		{Error{File: "c.yaml", Line: 3, Column: 5, Path: "rules[0].via", Msg: "m"}, "c.yaml:3:5: rules[0].via: m"},
		{Error{File: "c.yaml", Line: 3, Column: 5, Msg: "m"}, "c.yaml:3:5: m"},
		{Error{Path: "-i", Msg: "m"}, "-i: m"},
		{Error{File: "c.yaml", Msg: "yaml: m"}, "c.yaml: yaml: m"},
		{Error{Msg: "m"}, "m"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("%+v: got %q, want %q", tt.e, got, tt.want)
		}
	}
}
