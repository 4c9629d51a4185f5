package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/coreos/go-systemd/v22/daemon"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"nicproxy/bind"
	"nicproxy/bind/linkdns"
	"nicproxy/config"
	"nicproxy/proxy"
)

// serve runs the proxy until SIGINT or SIGTERM.
func serve(args []string, stdout, stderr io.Writer) int {
	fs, flags := serveFlags()
	err := flags.parse(fs, args)
	if err != nil {
		return helpOrUsage(stdout, stderr, "run", fs, err)
	}

	opts, err := hostOptions()
	if err != nil {
		fmt.Fprintf(stderr, "nicproxy: %v\n", err)
		return exitFailure
	}
	opts.InterfaceOverride, opts.ListenOverride = flags.nic, flags.listen
	cfg, err := loadConfig(flags.file, opts)
	if err != nil {
		return reportConfigError(stderr, err)
	}
	log, level, stopLogging, err := startLogging(cfg.Log, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "nicproxy: %v\n", err)
		return exitUsage
	}
	defer stopLogging()
	logStart(log, cfg)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// SIGHUP is caught from here on (its default would kill the process)
	// and handled once the listeners are open.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	// The running configuration, for the link watcher's log lines: it
	// names the NICs whose changes are worth a line.
	var running atomic.Pointer[config.Config]
	running.Store(cfg)
	links, stopWatching := watchLinks(log, running.Load)
	defer stopWatching()
	local, stopWatchingAddrs := watchAddrs(log)
	defer stopWatchingAddrs()
	linkDNS, stopLinkDNS := watchLinkDNS(log)
	defer stopLinkDNS()
	srv := proxy.New(cfg, log, proxy.Options{Links: links, Local: local, LinkDNS: linkDNS})
	if err := srv.Listen(ctx); err != nil {
		log.Error("cannot listen", zap.Error(err))
		return exitFailure
	}
	for i, addr := range srv.Addrs() {
		l := cfg.Listeners[i]
		log.Info("listening", zap.String("name", l.Name), zap.Stringer("addr", addr), zap.String("protocol", string(l.Protocol)))
	}

	// Under systemd (Type=notify), say when the listeners are open; no-op
	// elsewhere.
	notify(log, daemon.SdNotifyReady, "STATUS=serving")

	// Reloads and the stopping notice run beside Serve until it returns;
	// serve waits for both, so systemd hears STOPPING=1 before the exit.
	r := reloader{srv: srv, file: flags.file, nic: flags.nic, listen: flags.listen, level: level, log: log, current: &running}
	var beside sync.WaitGroup
	beside.Go(func() { r.run(ctx, hup, cfg) })
	beside.Go(func() {
		<-ctx.Done()
		notify(log, daemon.SdNotifyStopping, "STATUS=stopping: letting open connections finish")
	})
	err = srv.Serve(ctx)
	stop()
	beside.Wait()
	if err != nil {
		log.Error("serve", zap.Error(err))
		return exitFailure
	}
	log.Info("nicproxy stopped")
	return exitOK
}

// serveOptions are the flags of `nicproxy run`; `reload` parses a running
// nicproxy's command line with them to learn which file it serves.
type serveOptions struct{ file, nic, listen string }

func serveFlags() (*flag.FlagSet, *serveOptions) {
	o := &serveOptions{}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.StringVar(&o.file, "c", "", "config `FILE` (default: the embedded default)")
	fs.StringVar(&o.nic, "i", "", "pin all traffic to `NIC`, with or without a file")
	fs.StringVar(&o.listen, "l", "", "listen on `ADDR` (one mixed listener), overriding the file")
	return fs, o
}

// parse reads serve's arguments into o; serve takes no positional ones.
func (o *serveOptions) parse(fs *flag.FlagSet, args []string) error {
	positional, err := parseFlags(fs, args)
	if err == nil && len(positional) > 0 {
		err = usageError{fmt.Sprintf("unexpected argument %q", positional[0])}
	}
	return err
}

// startLogging builds the logger the configuration asks for, with the
// sampler's periodic report of the lines it dropped; stop ends that report
// and flushes the log.
func startLogging(cfg config.Log, stderr io.Writer) (log *zap.Logger, level zap.AtomicLevel, stop func(), err error) {
	var dropped atomic.Int64
	log, level, err = newLogger(cfg, stderr, &dropped)
	if err != nil {
		return nil, level, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	reported := make(chan struct{})
	go func() { defer close(reported); reportSuppressed(ctx, log, &dropped) }()
	return log, level, func() {
		cancel()
		<-reported
		_ = log.Sync()
	}, nil
}

// logStart writes the first lines: where the default goes (the NIC of the
// default route, named, when the file names none), the file's warnings,
// and each pinned NIC that is down.
func logStart(log *zap.Logger, cfg *config.Config) {
	def := cfg.Default.String()
	if cfg.DefaultFromRoute {
		def += " (the NIC of the default route)"
	}
	log.Info("nicproxy starting", zap.String("default_via", def), zap.String("config", cfg.Source),
		zap.Int("rules", len(cfg.Rules)), zap.String("version", versionString()))
	for _, w := range cfg.Warnings {
		log.Warn(w.Error())
	}
	warnDown(log, cfg)
}

// reloader re-reads the configuration on each SIGHUP.
type reloader struct {
	srv               *proxy.Server
	file, nic, listen string
	level             zap.AtomicLevel
	log               *zap.Logger
	current           *atomic.Pointer[config.Config] // the configuration serving, for others to read
}

// run handles SIGHUPs until ctx ends, telling systemd about each reload.
func (r reloader) run(ctx context.Context, hup <-chan os.Signal, running *config.Config) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if ctx.Err() != nil {
				return // shutting down: a reload would open what nothing serves
			}
			notify(r.log, daemon.SdNotifyReloading)
			next, err := reload(ctx, r.srv, running, r.file, r.nic, r.listen, r.level, r.log)
			status := "STATUS=serving"
			if err != nil {
				// systemctl status shows this until the next reload.
				status = "STATUS=serving the previous configuration: reload failed: " + firstLine(err)
			}
			running = next
			r.current.Store(next)
			notify(r.log, daemon.SdNotifyReady, status)
		}
	}
}

// watchLinks starts following the host's NICs so that dials read their
// state from memory, and logs each NIC of the running configuration that
// turns up or down, appears or goes. Without the watcher (no netlink),
// dials ask the kernel each time: slower, never wrong. stop ends the
// watcher and waits for it.
func watchLinks(log *zap.Logger, running func() *config.Config) (links bind.Links, stop func()) {
	w, err := bind.NewLinkWatcher()
	if err != nil {
		log.Warn("cannot watch NICs; asking the kernel on every dial", zap.Error(err))
		return nil, func() {}
	}
	w.OnChange(func(c bind.LinkChange) { logLinkChange(log, running(), c) })
	return w, follow(log, "stopped watching NICs; asking the kernel on every dial", w.Run)
}

// watchAddrs starts following the host's own addresses, so that the check
// every dial makes (is the destination the host itself?) reads them from
// memory. Without the watcher, the proxy lists them at most once a second.
func watchAddrs(log *zap.Logger) (local proxy.LocalAddrs, stop func()) {
	w, err := bind.NewAddrWatcher()
	if err != nil {
		log.Warn("cannot watch the host's addresses; listing them once a second", zap.Error(err))
		return nil, func() {}
	}
	return w, follow(log, "stopped watching the host's addresses; listing them on every dial",
		func(ctx context.Context) error { return w.Run(ctx, nil) })
}

// follow runs a watcher until stop is called, and says so if it ends
// before; stop ends it and waits for it.
func follow(log *zap.Logger, stopped string, run func(context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := run(ctx); !errors.Is(err, context.Canceled) {
			log.Warn(stopped, zap.Error(err))
		}
	}()
	return func() { cancel(); <-done }
}

// logLinkChange logs a change of a NIC the configuration pins to: the
// operator learns of a NIC going down when it happens, not from the dials
// that fail over or fail after it.
func logLinkChange(log *zap.Logger, cfg *config.Config, c bind.LinkChange) {
	if !slices.Contains(cfg.NICs(), c.Name) {
		return
	}
	nic := zap.String("nic", c.Name)
	switch {
	case !c.Exists:
		log.Warn("NIC is gone: "+pinnedFail+" until it is back", nic)
	case c.After.Up && !c.Existed:
		log.Info("NIC appeared, up: connections pinned to it use it", nic)
	case c.After.Up:
		log.Info("NIC is up again: connections pinned to it use it", nic)
	default:
		state, usable := nicState(c.Name)
		if usable { // up again already: the notification is older than the kernel's answer
			state = "down"
		}
		log.Warn("NIC went "+state+": "+pinnedFail+" until it is up", nic)
	}
}

// watchLinkDNS follows each NIC's own DNS servers (systemd-resolved's per
// link) for NICs without a dns setting. Where there is no such source the
// watcher knows none, and NICs use the system's nameservers, as before.
// stop ends the watcher and waits for it.
func watchLinkDNS(log *zap.Logger) (src *linkdns.Watcher, stop func()) {
	w := linkdns.NewWatcher(log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = w.Run(ctx) // it returns ctx's error only
	}()
	return w, func() { cancel(); <-done }
}

// notify tells systemd about a state change when NOTIFY_SOCKET is set.
func notify(log *zap.Logger, states ...string) {
	if _, err := daemon.SdNotify(false, strings.Join(states, "\n")); err != nil {
		log.Warn("sd_notify failed", zap.Error(err))
	}
}

// reload re-reads the configuration on SIGHUP. A file that does not load is
// reported, each problem once, and the running configuration keeps serving;
// the error returned (nil when the new configuration serves) is for the
// caller's metrics and systemd status. Failures Reload itself meets count
// in its own metrics.
func reload(ctx context.Context, srv *proxy.Server, running *config.Config, file, nic, listen string, level zap.AtomicLevel, log *zap.Logger) (*config.Config, error) {
	log.Info("SIGHUP: reloading", zap.String("config", running.Source))
	const failed = "reload failed; still serving the previous configuration"
	opts, err := hostOptions()
	if err == nil {
		opts.InterfaceOverride, opts.ListenOverride = nic, listen
		var next *config.Config
		next, err = loadConfig(file, opts)
		if err == nil {
			return applyReload(ctx, srv, running, next, level, log)
		}
	}
	// Each problem is a message of its own, unescaped, as `check` prints
	// it; the summary after them does not repeat them.
	var errs config.Errors
	if errors.As(err, &errs) {
		for _, e := range errs {
			log.Error("reload: " + e.Error())
		}
		log.Error(failed, zap.Int("problems", len(errs)))
	} else {
		log.Error(failed, zap.Error(err))
	}
	srv.ReloadFailed()
	return running, err
}

// applyReload hands a configuration that loaded to the server.
func applyReload(ctx context.Context, srv *proxy.Server, running, next *config.Config, level zap.AtomicLevel, log *zap.Logger) (*config.Config, error) {
	if err := srv.Reload(ctx, next); err != nil {
		log.Error("reload failed; still serving the previous configuration", zap.Error(err))
		return running, err
	}
	if l, err := zapcore.ParseLevel(next.Log.Level); err == nil {
		level.SetLevel(l)
	}
	if next.Log.Format != running.Log.Format {
		log.Warn("log.format changes apply at restart", zap.String("format", running.Log.Format))
	}
	for _, w := range next.Warnings {
		log.Warn(w.Error())
	}
	warnDown(log, next)
	log.Info("reloaded", zap.String("default_via", next.Default.String()), zap.Int("rules", len(next.Rules)))
	return next, nil
}

// warnDown names each NIC the configuration pins to that cannot carry
// traffic now, so the operator learns it before the first failed dial.
func warnDown(log *zap.Logger, cfg *config.Config) {
	for _, d := range downNICs(cfg) {
		log.Warn("NIC is "+d.state+": "+pinnedFail+" until it is up", zap.String("nic", d.name))
	}
}

// firstLine is an error's first line, for one-line status texts.
func firstLine(err error) string {
	line, _, _ := strings.Cut(err.Error(), "\n")
	return line
}

// newLogger builds the zap logger the config asks for, writing to w; its
// level can change on reload. Repeated messages are sampled; dropped
// counts the lines left out.
func newLogger(cfg config.Log, w io.Writer, dropped *atomic.Int64) (*zap.Logger, zap.AtomicLevel, error) {
	parsed, err := zapcore.ParseLevel(cfg.Level)
	if err != nil {
		return nil, zap.AtomicLevel{}, fmt.Errorf("log.level: %w", err)
	}
	level := zap.NewAtomicLevelAt(parsed)
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	encCfg.EncodeDuration = zapcore.StringDurationEncoder
	var enc zapcore.Encoder
	if strings.EqualFold(cfg.Format, "json") {
		enc = zapcore.NewJSONEncoder(encCfg)
	} else {
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	}
	return zap.New(sampled(zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), level), dropped)), level, nil
}
