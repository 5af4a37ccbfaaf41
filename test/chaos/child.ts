/**
 * What every chaos child program shares: its configuration keys, a stdout protocol the controller reads, a logger
 * that keeps logs on stderr (and reports leadership on stdout), and the kit's layers built from the environment.
 *
 * Stdout protocol, one line each: `ready` once the layers are built, `leader <singleton>` when this process wins a
 * singleton and `follower <singleton>` when it loses or releases it, and program-specific lines (`wrote`, `done`,
 * `fetched`, `stats`).
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as HashMap from "effect/HashMap"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as EventoClient from "../../src/EventoClient.js"
import * as Idempotency from "../../src/Idempotency.js"
import * as PositionStore from "../../src/PositionStore.js"
import * as Singleton from "../../src/Singleton.js"

/** Writes one protocol line on stdout. */
export const say = (line: string): Effect.Effect<void> => Effect.sync(() => void process.stdout.write(`${line}\n`))

const text = (message: unknown): string => {
  const parts = Array.isArray(message) ? message : [message]
  return parts.map((part) => typeof part === "string" ? part : safeJson(part)).join(" ")
}

const safeJson = (value: unknown): string => {
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}

// Logs go to stderr as JSON lines (the controller shows the tail when a child misbehaves); singletons won and lost
// are also announced on stdout, which is how the controller tells the leader from the standby.
const logger = Logger.make(({ annotations, cause, date, logLevel, message }) => {
  const fields = Object.fromEntries(HashMap.toEntries(annotations))
  const line = text(message)
  if (line === "singleton acquired") process.stdout.write(`leader ${String(fields["singleton"])}\n`)
  if (line === "singleton lost" || line === "singleton released") {
    process.stdout.write(`follower ${String(fields["singleton"])}\n`)
  }
  const entry = { t: date.toISOString(), level: logLevel.label, message: line, ...fields }
  const failure = cause._tag === "Empty" ? {} : { cause: String(cause) }
  process.stderr.write(`${safeJson({ ...entry, ...failure })}\n`)
})

/** The child's logger, at Info and above. */
export const Logging = Layer.merge(Logger.replace(Logger.defaultLogger, logger), Logger.minimumLogLevel(LogLevel.Info))

/** `DATABASE_URL`, a small pool named after the role (so `pg_stat_activity` tells who is who). */
export const Database = (role: string) =>
  PgClient.layerConfig({
    url: Config.redacted("DATABASE_URL"),
    maxConnections: Config.succeed(4),
    applicationName: Config.succeed(`chaos-${role}`)
  })

/** `EVENTODB_URL` (the controller's fault proxy), `EVENTODB_TOKEN` and `EVENTODB_TIMEOUT`. */
export const Evento = EventoClient.layerConfig().pipe(Layer.provide(NodeHttpClient.layerUndici))

/** The SQL stores and the singleton on `DATABASE_URL`, with the database clients. */
export const Stores = (role: string) =>
  Layer.mergeAll(PositionStore.layer, Idempotency.layer, Singleton.layer).pipe(Layer.provideMerge(Database(role)))

/** `Stores` and the EventoDB client. */
export const Kit = (role: string) => Layer.merge(Stores(role), Evento)

export const int = (name: string, fallback: number) => Config.integer(name).pipe(Config.withDefault(fallback))

export const str = (name: string, fallback: string) => Config.string(name).pipe(Config.withDefault(fallback))

export const bool = (name: string, fallback: boolean) => Config.boolean(name).pipe(Config.withDefault(fallback))

/** Runs a child program: logs as above, exit code 0 on SIGTERM/SIGINT (interruption), 1 on failure. */
export const main = <E>(program: Effect.Effect<unknown, E>): void =>
  NodeRuntime.runMain(program.pipe(Effect.provide(Logging)), { disablePrettyLogger: true })
