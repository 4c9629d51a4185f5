package main

import (
	"context"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Log sampling: a message repeated by the thousand (connections refused at
// the limit, failed accepts, failed logins) would flood the journal and
// cost more than the work it reports. At most samplePerTick lines of one
// message and level are written per sampleTick; the rest are counted, and
// a line every suppressedReport says how many were dropped.
const (
	sampleTick       = time.Second
	samplePerTick    = 10
	suppressedReport = 10 * time.Second
)

// sampled wraps core in zap's sampler. Successful access lines go around
// it: each is the record of one connection, not a repeat.
func sampled(core zapcore.Core, dropped *atomic.Int64) zapcore.Core {
	s := zapcore.NewSamplerWithOptions(core, sampleTick, samplePerTick, 0,
		zapcore.SamplerHook(func(_ zapcore.Entry, d zapcore.SamplingDecision) {
			if d&zapcore.LogDropped != 0 {
				dropped.Add(1)
			}
		}))
	return accessBypass{Core: s, raw: core}
}

// accessBypass sends Info "access" lines to raw and the rest to the
// sampler. A failed login's access line is a warning, and is sampled.
type accessBypass struct {
	zapcore.Core
	raw zapcore.Core
}

func (c accessBypass) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if ent.Level == zapcore.InfoLevel && ent.Message == "access" {
		return c.raw.Check(ent, ce)
	}
	return c.Core.Check(ent, ce)
}

func (c accessBypass) With(fields []zapcore.Field) zapcore.Core {
	return accessBypass{Core: c.Core.With(fields), raw: c.raw.With(fields)}
}

// reportSuppressed logs, every suppressedReport until ctx ends, how many
// lines the sampler dropped.
func reportSuppressed(ctx context.Context, log *zap.Logger, dropped *atomic.Int64) {
	tick := time.NewTicker(suppressedReport)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			if n := dropped.Swap(0); n > 0 {
				log.Warn("repeated log lines suppressed", zap.Int64("count", n))
			}
			return
		case <-tick.C:
			if n := dropped.Swap(0); n > 0 {
				log.Warn("repeated log lines suppressed", zap.Int64("count", n), zap.Duration("period", suppressedReport))
			}
		}
	}
}
