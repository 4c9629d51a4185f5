package cgroup

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
)

// ErrPermission means the kernel refused to load or attach the programs:
// the caller lacks CAP_BPF, CAP_NET_ADMIN or CAP_SYS_ADMIN (or is not root).
var ErrPermission = errors.New("permission denied")

// hook is one program and where it attaches.
type hook struct {
	name   string
	typ    ebpf.ProgramType
	attach ebpf.AttachType
}

var hooks = []hook{
	{"nicproxy_create", ebpf.CGroupSock, ebpf.AttachCGroupInetSockCreate},
	{"nicproxy_conn4", ebpf.CGroupSockAddr, ebpf.AttachCGroupInet4Connect},
	{"nicproxy_conn6", ebpf.CGroupSockAddr, ebpf.AttachCGroupInet6Connect},
	{"nicproxy_send4", ebpf.CGroupSockAddr, ebpf.AttachCGroupUDP4Sendmsg},
	{"nicproxy_send6", ebpf.CGroupSockAddr, ebpf.AttachCGroupUDP6Sendmsg},
	{"nicproxy_bind4", ebpf.CGroupSockAddr, ebpf.AttachCGroupInet4Bind},
	{"nicproxy_bind6", ebpf.CGroupSockAddr, ebpf.AttachCGroupInet6Bind},
	{"nicproxy_listen", ebpf.SockOps, ebpf.AttachCGroupSockOps},
	{"nicproxy_egress", ebpf.CGroupSKB, ebpf.AttachCGroupInetEgress},
}

// Programs are the loaded programs and their maps for one Policy. They
// act on nothing until attached to a cgroup.
type Programs struct {
	coll *ebpf.Collection
}

// Load compiles p, loads the programs and fills their maps; local are the
// destinations to leave alone (see LocalPrefixes).
func Load(p Policy, local []netip.Prefix) (*Programs, error) {
	t, err := p.compile()
	if err != nil {
		return nil, err
	}
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
	if err := rlimit.RemoveMemlock(); err != nil && !errors.Is(err, os.ErrPermission) {
		return nil, fmt.Errorf("raise the locked-memory limit for BPF maps: %w", err)
	}
	var ours []int
	addOurs := func(v Verdict) {
		if v.Action == Pin && !slices.Contains(ours, v.Index) {
			ours = append(ours, v.Index)
		}
	}
	addOurs(p.Default)
	for _, r := range p.Rules {
		addOurs(r.Verdict)
	}
	spec := &ebpf.CollectionSpec{
		Maps:     mapSpecs(len(t.entries), 4096),
		Programs: map[string]*ebpf.ProgramSpec{},
	}
	for _, h := range hooks {
		var insns asm.Instructions
		switch h.attach {
		case ebpf.AttachCGroupInetSockCreate:
			// An ICMP or raw socket can be pinned only now, before its
			// destination is known: when the rules send different
			// destinations different ways, it follows the routing
			// table, and the egress program drops what leaves the
			// wrong way.
			other, uniform := t.otherVerdict()
			if !uniform {
				other = Verdict{Action: System}
				if p.Default.Action == Reject {
					other = p.Default
				}
			}
			insns = sockCreateProgram(p.Default, other, p.UDPAtFirstUse)
		case ebpf.AttachCGroupInet4Bind, ebpf.AttachCGroupInet6Bind:
			insns = bindProgram(h.attach == ebpf.AttachCGroupInet6Bind, ours)
		case ebpf.AttachCGroupInetEgress:
			insns = egressProgram()
		case ebpf.AttachCGroupSockOps:
			insns = listenProgram(p.Default)
		default:
			v6 := h.attach == ebpf.AttachCGroupInet6Connect || h.attach == ebpf.AttachCGroupUDP6Sendmsg
			sendmsg := h.attach == ebpf.AttachCGroupUDP4Sendmsg || h.attach == ebpf.AttachCGroupUDP6Sendmsg
			insns = sockAddrProgram(v6, sendmsg, ours)
		}
		spec.Programs[h.name] = &ebpf.ProgramSpec{
			Name: h.name, Type: h.typ, AttachType: h.attach,
			Instructions: insns, License: "GPL",
		}
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			// cilium/ebpf's own hint (RLIMIT_MEMLOCK) is beside the
			// point on kernels that charge BPF memory to the cgroup.
			return nil, fmt.Errorf("the kernel refused to load BPF programs: %w", ErrPermission)
		}
		return nil, fmt.Errorf("load programs: %w", err)
	}
	progs := &Programs{coll: coll}
	if err := progs.fill(t, local); err != nil {
		progs.Close()
		return nil, err
	}
	return progs, nil
}

func (p *Programs) fill(t tables, local []netip.Prefix) error {
	ports := p.coll.Maps[mapPorts]
	for port, class := range t.portClass {
		if class == 0 {
			continue
		}
		// The programs read user_port as it sits in memory: network
		// byte order in the low half of a u32.
		key := uint32(port>>8) | uint32(port&0xff)<<8
		if err := ports.Update(key, uint32(class), ebpf.UpdateAny); err != nil {
			return fmt.Errorf("fill port classes: %w", err)
		}
	}
	rules := p.coll.Maps[mapRules]
	for _, e := range t.entries {
		key := make([]byte, rulesKeySize)
		putPrefixLen(key, 32+e.Prefix.Bits())
		key[4], key[5] = e.Class, e.Transport
		a := e.Prefix.Addr().As16()
		copy(key[8:], a[:])
		val := make([]byte, 8)
		putU32(val, uint32(e.Verdict.Action))
		putU32(val[4:], uint32(e.Verdict.Index))
		if err := rules.Update(key, val, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("fill rules: %w", err)
		}
	}
	for _, pre := range local {
		if err := p.AddLocal(pre); err != nil {
			return err
		}
	}
	return nil
}

// AddLocal adds a destination prefix the programs leave alone.
func (p *Programs) AddLocal(pre netip.Prefix) error {
	if err := p.coll.Maps[mapLocal].Update(localKey(pre), uint32(1), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("add local address %s: %w", pre, err)
	}
	return nil
}

// RemoveLocal removes what AddLocal added; an absent prefix is no error.
func (p *Programs) RemoveLocal(pre netip.Prefix) error {
	err := p.coll.Maps[mapLocal].Delete(localKey(pre))
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("remove local address %s: %w", pre, err)
	}
	return nil
}

func localKey(pre netip.Prefix) []byte {
	pre = to16(pre)
	key := make([]byte, localKeySize)
	putPrefixLen(key, pre.Bits())
	a := pre.Addr().As16()
	copy(key[4:], a[:])
	return key
}

// putPrefixLen and putU32 write host-order words, as the kernel reads
// them (the LPM prefix length is a host-order u32).
func putPrefixLen(b []byte, bits int) { putU32(b, uint32(bits)) }

func putU32(b []byte, v uint32) { binary.NativeEndian.PutUint32(b, v) }

// Close unloads the programs and maps; links that hold them attached (see
// Attach and Attachment.Pin) keep them alive in the kernel until closed.
func (p *Programs) Close() {
	p.coll.Close()
}

// Attachment is the programs attached to one cgroup.
type Attachment struct {
	links []link.Link
	drops *ebpf.Map
}

// Attach attaches every program to the cgroup v2 directory dir. Sockets
// the cgroup's processes already hold are not changed; new ones are.
func (p *Programs) Attach(dir string) (*Attachment, error) {
	a := &Attachment{drops: p.coll.Maps[mapDrops]}
	for _, h := range hooks {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: dir, Attach: h.attach, Program: p.coll.Programs[h.name]})
		if err != nil {
			a.Close()
			if errors.Is(err, os.ErrPermission) {
				err = fmt.Errorf("%w: %w", ErrPermission, err)
			}
			return nil, fmt.Errorf("attach %s to %s: %w", h.attach, dir, err)
		}
		a.links = append(a.links, l)
	}
	return a, nil
}

// AttachGroup attaches every program to a Group exec made, for as long as
// the cgroup lives. Unlike Attach's links, which the kernel detaches when
// the last descriptor to them closes, these stay if exec is killed: the
// command's processes never carry on unpinned. The returned func detaches
// them; removing the cgroup frees them too.
func (p *Programs) AttachGroup(g *Group) (detach func() error, err error) {
	var done []hook
	detach = func() error {
		var errs []error
		for _, h := range done {
			errs = append(errs, link.RawDetachProgram(link.RawDetachProgramOptions{
				Target: g.FD(), Program: p.coll.Programs[h.name], Attach: h.attach,
			}))
		}
		return errors.Join(errs...)
	}
	for _, h := range hooks {
		err := link.RawAttachProgram(link.RawAttachProgramOptions{
			Target: g.FD(), Program: p.coll.Programs[h.name], Attach: h.attach, Flags: bpfFAllowMulti,
		})
		if err != nil {
			_ = detach()
			if errors.Is(err, os.ErrPermission) {
				err = fmt.Errorf("%w: %w", ErrPermission, err)
			}
			return nil, fmt.Errorf("attach %s to %s: %w", h.attach, g.Path, err)
		}
		done = append(done, h)
	}
	return detach, nil
}

// bpfFAllowMulti is BPF_F_ALLOW_MULTI: programs of enclosing cgroups (an
// exec inside a unit pinned by exec, say) keep running too.
const bpfFAllowMulti = 2

// Close detaches the programs; pinned links stay until Unpin.
func (a *Attachment) Close() error {
	var errs []error
	for _, l := range a.links {
		errs = append(errs, l.Close())
	}
	return errors.Join(errs...)
}

// Pin pins the attachment's links under dir, a directory in a BPF file
// system, so the programs stay attached after this process exits.
func (a *Attachment) Pin(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pin programs: %w", err)
	}
	for i, l := range a.links {
		path := filepath.Join(dir, hooks[i].name)
		if err := l.Pin(path); err != nil {
			return fmt.Errorf("pin %s: %w (is %s on a BPF file system? mount -t bpf bpf /sys/fs/bpf)", path, err, dir)
		}
	}
	// The drop counter too, for Unpin to report.
	if err := a.drops.Pin(filepath.Join(dir, mapDrops)); err != nil {
		return fmt.Errorf("pin the egress drop counter: %w", err)
	}
	return nil
}

// Unpin detaches programs pinned by Pin under dir and removes the pins
// and the directory. dropped is how many packets the egress program
// dropped while pinned (0 for pins made before it counted).
func Unpin(dir string) (dropped uint64, err error) {
	found := false
	var errs []error
	if m, err := ebpf.LoadPinnedMap(filepath.Join(dir, mapDrops), nil); err == nil {
		if err := m.Lookup(uint32(0), &dropped); err != nil {
			errs = append(errs, fmt.Errorf("read the egress drop counter: %w", err))
		}
		errs = append(errs, m.Unpin(), m.Close())
	}
	for _, h := range hooks {
		path := filepath.Join(dir, h.name)
		l, err := link.LoadPinnedLink(path, nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("load %s: %w", path, err))
			continue
		}
		found = true
		// Unpin removes the file; closing the last reference detaches.
		errs = append(errs, l.Unpin(), l.Close())
	}
	if !found && errors.Join(errs...) == nil {
		return 0, fmt.Errorf("no programs pinned under %s", dir)
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return dropped, errors.Join(errs...)
}
