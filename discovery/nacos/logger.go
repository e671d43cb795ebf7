package nacos

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strings"

	"github.com/nacos-group/nacos-sdk-go/v2/common/logger"
)

// sdkLogger routes the SDK's log output to a slog.Logger, with secrets
// masked. It carries no other duty: the adapter hears the server's
// pushes on each client's own connection (see hearPushes), so a program
// that installs a logger of its own in the SDK loses nothing but these
// lines.
type sdkLogger struct {
	l       *slog.Logger
	secrets []string
}

var _ logger.Logger = (*sdkLogger)(nil)

// installLogger points the SDK's process-wide logger at cfg.Logger (or
// nowhere). The SDK keeps one logger for the whole process, so with
// several Configs the last client created decides where its lines go.
func installLogger(cfg Config) {
	logger.SetLogger(&sdkLogger{l: cfg.sdkLogger().With("component", "nacos-sdk"), secrets: cfg.secrets()})
}

// Close implements logger.Logger; the SDK calls it when another logger
// replaces this one. There is nothing to flush.
func (s *sdkLogger) Close() error { return nil }

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

func (s *sdkLogger) Info(args ...any) { s.out(slog.LevelDebug, false, "", args) }
func (s *sdkLogger) Warn(args ...any) {
	level := slog.LevelWarn
	if len(args) == 1 && isNoLocalFile(args[0]) {
		level = slog.LevelDebug
	}
	s.out(level, false, "", args)
}

func (s *sdkLogger) Error(args ...any) { s.out(slog.LevelError, false, "", args) }
func (s *sdkLogger) Debug(args ...any) { s.out(slog.LevelDebug, false, "", args) }

func (s *sdkLogger) Infof(format string, args ...any) { s.out(slog.LevelDebug, true, format, args) }
func (s *sdkLogger) Warnf(format string, args ...any) {
	level := slog.LevelWarn
	if format == failedResponseFormat && len(args) == 4 && (args[3] == "config data not exist" || args[0] == "ConfigQueryRequest" && args[3] == "authorization failed!") {
		// An item that does not exist, as the health check's (see
		// healthItem) and a missing document are: an answer, not
		// trouble. So is a read refused for lack of permission, as the
		// health check's is for a user granted its documents only (the
		// line does not say which item: a document's refused reads are
		// logged by the catalog itself).
		level = slog.LevelDebug
	}
	s.out(level, true, format, args)
}

// failedResponseFormat is the format of the SDK's log line for a request
// the server answered with an error (RpcClient.Request): the request
// type, the error and result codes, and the server's message.
const failedResponseFormat = "%s request received fail response, error code: %d, result code: %d, message: [%s]"

func (s *sdkLogger) Errorf(format string, args ...any) {
	level := slog.LevelError
	if format == subServerErrorFormat && len(args) > 0 && isHealthItem(args[0]) {
		// The health check's read refused for lack of permission (a
		// user granted its documents only): an answer, which is all
		// the check asks.
		level = slog.LevelDebug
	}
	s.out(level, true, format, args)
}

// subServerErrorFormat is the format of the SDK's log line for a config
// read the server answered with an error: the dataId, group, tenant and
// response.
const subServerErrorFormat = "[config_rpc_client] [sub-server-error]  dataId=%s, group=%s, tenant=%s, code=%+v"

// isHealthItem reports whether arg is the dataId of a health check's item
// (healthItem).
func isHealthItem(arg any) bool {
	id, ok := arg.(string)
	return ok && strings.HasPrefix(id, healthItemPrefix)
}

func (s *sdkLogger) Debugf(format string, args ...any) { s.out(slog.LevelDebug, true, format, args) }

// isNoLocalFile reports whether an SDK log line (a string or an error)
// says that a read found no local cache or failover file of an item, which
// the SDK logs at Warn on reads and listens of an item it has no file of
// (the failover one on every read, once a second for the health check's):
// the adapter keeps no such files (a private directory, no snapshots), so
// it is no news.
func isNoLocalFile(arg any) bool {
	return strings.Contains(fmt.Sprint(arg), "failed. cause file doesn't exist")
}
