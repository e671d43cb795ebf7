package nacos

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"

	"github.com/nacos-group/nacos-sdk-go/v2/common/logger"
)

// sdkLogger routes the SDK's log output to a slog.Logger, with secrets
// masked, and hands the config-change pushes it logs to pushes.
type sdkLogger struct {
	l       *slog.Logger
	secrets []string
	pushes  *pushHub
}

var _ logger.Logger = (*sdkLogger)(nil)

// installMu makes installLogger's read of the SDK's logger and its
// replacement one step, so that two clients created at once keep one
// push hub.
var installMu sync.Mutex

// installLogger points the SDK's process-wide logger at cfg.Logger (or
// nowhere). It must run after each SDK client is created, since creating
// one resets the SDK's logger to a file logger. The push hub of the
// logger it replaces, if it installed that one, goes over to the new
// one, and is returned.
func installLogger(cfg Config) *pushHub {
	installMu.Lock()
	defer installMu.Unlock()
	hub := &pushHub{catalogs: map[*Catalog]struct{}{}}
	if prev, ok := logger.GetLogger().(*sdkLogger); ok && prev.pushes != nil {
		hub = prev.pushes
	}
	logger.SetLogger(&sdkLogger{l: cfg.logger().With("component", "nacos-sdk"), secrets: cfg.secrets(), pushes: hub})
	return hub
}

// pushHub hands the config-change pushes the SDK receives to the
// catalogs of the process. nacos-sdk-go v2.3.2 can lose a push: its
// handler marks the item out of sync and starts a listen round, but a
// listen round already in flight, whose answer predates the change,
// then marks every item it was not told about in sync again, and the
// listener is never called (ConfigClient.executeConfigListen; under the
// fleet benchmark one process in four missed an update about every
// other run, until the SDK's 5-minute full sync). The handler logs each
// push before anything else, and the SDK offers no other hook, so the
// catalogs hear of pushes from the log line and read the item
// themselves. A program that installs a logger of its own in the SDK
// loses this, and its catalogs fall back to the SDK's listener and
// their periodic re-reads.
type pushHub struct {
	mu       sync.Mutex
	catalogs map[*Catalog]struct{}
}

func (h *pushHub) add(c *Catalog) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.catalogs[c] = struct{}{}
}

func (h *pushHub) remove(c *Catalog) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.catalogs, c)
}

func (h *pushHub) notify(dataID, group, tenant string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.catalogs {
		c.pushed(dataID, group, tenant)
	}
}

// pushFormat is the format of the SDK's log line for a config-change
// push (ConfigChangeNotifyRequestHandler), with the client's name, the
// dataId, the group and the tenant.
const pushFormat = "%s [server-push] config changed. dataId=%s, group=%s,tenant=%s"

// The access token's value in the shapes the SDK prints it: a field or
// parameter (accessToken:v, accessToken=v&, "accessToken":"v",
// "accessToken":["v"], and the same JSON escaped inside a string), a
// protobuf header (key:"accessToken" value:"v"), and, whatever the shape,
// anything that looks like a JWT.
var (
	accessToken      = regexp.MustCompile(`(?i)(access_?token\\?"?\s*[:=]\s*\[?\s*\\?"?)[^\s"\\,&}\]]+`)
	protoAccessToken = regexp.MustCompile(`(?i)(key:\s*"access_?token"\s+value:\s*")[^"]+`)
	jwt              = regexp.MustCompile(`eyJ[\w-]+\.[\w-]+\.[\w-]+`)
)

// out formats and logs one line when level is enabled: with Sprintf
// when f is true, Sprint otherwise.
func (s *sdkLogger) out(level slog.Level, f bool, format string, args []any) {
	ctx := context.Background()
	if !s.l.Enabled(ctx, level) {
		return
	}
	var msg string
	if f {
		msg = fmt.Sprintf(format, args...)
	} else {
		msg = fmt.Sprint(args...)
	}
	for _, secret := range s.secrets {
		msg = strings.ReplaceAll(msg, secret, "***")
	}
	// The access token the SDK gets at login rides in every request's
	// headers, which it logs at debug level; it is unknown in advance.
	msg = accessToken.ReplaceAllString(msg, "${1}***")
	msg = protoAccessToken.ReplaceAllString(msg, "${1}***")
	msg = jwt.ReplaceAllString(msg, "***")
	s.l.Log(ctx, level, strings.TrimSpace(msg))
}

func (s *sdkLogger) Info(args ...any)  { s.out(slog.LevelDebug, false, "", args) }
func (s *sdkLogger) Warn(args ...any)  { s.out(slog.LevelWarn, false, "", args) }
func (s *sdkLogger) Error(args ...any) { s.out(slog.LevelError, false, "", args) }
func (s *sdkLogger) Debug(args ...any) { s.out(slog.LevelDebug, false, "", args) }

func (s *sdkLogger) Infof(format string, args ...any) {
	if format == pushFormat && len(args) == 4 && s.pushes != nil {
		dataID, _ := args[1].(string)
		group, _ := args[2].(string)
		tenant, _ := args[3].(string)
		s.pushes.notify(dataID, group, tenant)
	}
	s.out(slog.LevelDebug, true, format, args)
}
func (s *sdkLogger) Warnf(format string, args ...any) {
	level := slog.LevelWarn
	if format == failedResponseFormat && len(args) == 4 && args[3] == "config data not exist" {
		// An item that does not exist, as the catalog's health check of
		// _defaults finds once a second in a fleet without defaults: an
		// answer, not trouble.
		level = slog.LevelDebug
	}
	s.out(level, true, format, args)
}

// failedResponseFormat is the format of the SDK's log line for a request
// the server answered with an error (RpcClient.Request): the request
// type, the error and result codes, and the server's message.
const failedResponseFormat = "%s request received fail response, error code: %d, result code: %d, message: [%s]"

func (s *sdkLogger) Errorf(format string, args ...any) { s.out(slog.LevelError, true, format, args) }
func (s *sdkLogger) Debugf(format string, args ...any) { s.out(slog.LevelDebug, true, format, args) }
