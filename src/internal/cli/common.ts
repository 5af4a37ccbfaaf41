/**
 * What the operator subcommands share: their options, how they find the database and EventoDB (flags first, then
 * `Config`), how errors become one readable line on stderr, and how results print as tables or JSON.
 */
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Config from "effect/Config"
import * as Console from "effect/Console"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as FiberRef from "effect/FiberRef"
import * as HashSet from "effect/HashSet"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as EventoClientModule from "../../EventoClient.js"
import type { EventoError } from "../../EventoError.js"
import * as Migrations from "../../Migrations.js"
import type { InvalidConsumerInput } from "../../PositionStore.js"
import { decodeNamespace } from "../token.js"

/** A failure the CLI reports as `eventodb-kit: <message>` on stderr, exiting 1. */
export class CliError extends Data.TaggedError("CliError")<{ readonly message: string }> {}

const fail = (message: string) => Effect.fail(new CliError({ message }))

// --- options ---

export const json = Options.boolean("json").pipe(
  Options.withDescription("Print one JSON document on stdout instead of tables")
)

export const databaseUrl = Options.redacted("database-url").pipe(
  Options.optional,
  Options.withDescription("PostgreSQL URL; default: the DATABASE_URL environment variable")
)

export const namespace = Options.text("namespace").pipe(
  Options.optional,
  Options.withDescription("EventoDB namespace; default: the namespace of EVENTODB_TOKEN")
)

export const eventodbUrl = Options.text("eventodb-url").pipe(
  Options.optional,
  Options.withDescription("EventoDB base URL; default: EVENTODB_URL, else http://127.0.0.1:8080")
)

export const eventodbToken = Options.redacted("eventodb-token").pipe(
  Options.optional,
  Options.withDescription("Token of the application's namespace; default: EVENTODB_TOKEN")
)

const shorthand = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)$/
const shorthandUnits = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 } as const

/** `7d`, `12h`, `30m`, `45s`, `500ms`, or Effect's own spelling (`7 days`). */
export const parseDuration = (text: string): Option.Option<Duration.Duration> => {
  const match = shorthand.exec(text.trim())
  if (match !== null) {
    const unit = match[2] as keyof typeof shorthandUnits
    return Option.some(Duration.millis(Number(match[1]) * shorthandUnits[unit]))
  }
  return Duration.decodeUnknown(text.trim()).pipe(Option.filter((d) => Duration.isFinite(d)))
}

/** A duration option, checked when the arguments are parsed. */
export const duration = (name: string, fallback: string) =>
  Options.text(name).pipe(
    Options.withDefault(fallback),
    Options.mapEffect((text) =>
      Option.match(parseDuration(text), {
        onNone: () =>
          Effect.fail(ValidationError.invalidValue(HelpDoc.p(
            `--${name}: '${text}' is not a duration (examples: 7d, 12h, 30m, "7 days")`
          ))),
        onSome: Effect.succeed
      })
    )
  )

// --- configuration ---

const fromFlagOrConfig = <A>(flag: Option.Option<A>, config: Config.Config<A>, missing: string) =>
  Option.match(flag, {
    onSome: Effect.succeed,
    onNone: () => Effect.mapError(config, () => new CliError({ message: missing }))
  })

export const resolveDatabaseUrl = (flag: Option.Option<Redacted.Redacted<string>>) =>
  fromFlagOrConfig(
    flag,
    Config.redacted("DATABASE_URL").pipe(Config.withDescription("PostgreSQL URL of the application's database")),
    "DATABASE_URL is not set: set it or pass --database-url"
  )

/** The EventoDB token from the flag or `EVENTODB_TOKEN`, if either is there. */
export const resolveToken = (flag: Option.Option<Redacted.Redacted<string>>) =>
  Option.match(flag, {
    onSome: (token) => Effect.succeed(Option.some(token)),
    onNone: () =>
      Config.option(Config.redacted("EVENTODB_TOKEN")).pipe(
        Effect.mapError(() => new CliError({ message: "EVENTODB_TOKEN could not be read" }))
      )
  })

export const resolveEventodbUrl = (flag: Option.Option<string>) =>
  Option.match(flag, {
    onSome: Effect.succeed,
    onNone: () =>
      Config.string("EVENTODB_URL").pipe(
        Config.withDefault("http://127.0.0.1:8080"),
        Effect.mapError(() => new CliError({ message: "EVENTODB_URL could not be read" }))
      )
  }).pipe(Effect.map((url) => url.replace(/\/+$/, "")))

/** The namespace from `--namespace`, else the one `EVENTODB_TOKEN` (or `--eventodb-token`) names. */
export const resolveNamespace = (
  flag: Option.Option<string>,
  tokenFlag: Option.Option<Redacted.Redacted<string>> = Option.none()
) =>
  Option.match(flag, {
    onSome: (name) => name.length === 0 ? fail("--namespace must not be empty") : Effect.succeed(name),
    onNone: () =>
      Effect.flatMap(resolveToken(tokenFlag), (token) =>
        Option.match(token, {
          onNone: () => fail("no namespace: pass --namespace, or set EVENTODB_TOKEN to use its namespace"),
          onSome: (value) =>
            Either.match(decodeNamespace(Redacted.value(value)), {
              onLeft: (why) => fail(`EVENTODB_TOKEN is not a namespace token: ${why}`),
              onRight: (name) => Effect.succeed(name)
            })
        }))
  })

// --- the database ---

/** `postgres://user@host:port/db`: the URL without its password, for messages. */
export const describeDatabase = (url: Redacted.Redacted<string>): string => {
  try {
    const parsed = new URL(Redacted.value(url))
    parsed.password = ""
    return parsed.toString()
  } catch {
    return "the configured database"
  }
}

/** The most useful line of an error from `pg` or the network (an `AggregateError` has an empty message). */
export const causeMessage = (cause: unknown): string => {
  if (cause instanceof AggregateError && cause.errors.length > 0) {
    return [...new Set(cause.errors.map(causeMessage))].join("; ")
  }
  if (cause instanceof Error) {
    const code = (cause as { readonly code?: unknown }).code
    if (cause.message.length > 0) return cause.message
    return typeof code === "string" ? code : cause.name
  }
  return String(cause)
}

/**
 * Runs `effect` with a `PgClient` on `url`. A database that cannot be reached fails with a `CliError` naming it
 * (without its password); the client is closed when `effect` ends.
 */
export const withDatabase = <A, E, R>(url: Redacted.Redacted<string>, effect: Effect.Effect<A, E, R>) => {
  const database = PgClient.layer({
    url,
    maxConnections: 2,
    connectTimeout: Duration.seconds(5),
    applicationName: "eventodb-kit-cli"
  }).pipe(
    Layer.mapError((error) =>
      new CliError({ message: `cannot connect to ${describeDatabase(url)}: ${causeMessage(error.cause)}` })
    )
  )
  return Effect.provide(effect, database)
}

/** Fails unless the database is at the schema version this library runs on. */
export const requireSchema: Effect.Effect<number, CliError, SqlClient.SqlClient> = Migrations.currentVersion.pipe(
  Effect.mapError((error) => new CliError({ message: `cannot read the schema version: ${causeMessage(error.cause)}` })),
  Effect.flatMap((version) => {
    if (version === Migrations.latestVersion) return Effect.succeed(version)
    if (version > Migrations.latestVersion) {
      return fail(
        `the database is at schema version ${version}, newer than this eventodb-kit knows (${Migrations.latestVersion})`
      )
    }
    return fail(
      `the database is at schema version ${version}; this command needs version ${Migrations.latestVersion}: ` +
        "run `eventodb-kit migrate up`"
    )
  })
)

// --- EventoDB ---

/**
 * An `EventoClient` on `url` with `token`. A token that does not parse fails with a `CliError`. The `HttpClient`
 * must outlive the client's use: provide `httpClient` around the whole command.
 */
export const makeClient = (url: string, token: Redacted.Redacted<string>) =>
  EventoClientModule.make({ url, token, timeout: Duration.seconds(10) }).pipe(
    Effect.mapError((error) => new CliError({ message: `the EventoDB token is not usable: ${error.message}` }))
  )

export const httpClient = NodeHttpClient.layerUndici

export const describeEventoError = (url: string, error: EventoError): string => {
  switch (error._tag) {
    case "EventoUnavailable":
      return `cannot reach EventoDB at ${url}: ${error.message}`
    case "EventoTimeout":
      return `EventoDB at ${url} did not answer in time: ${error.message}`
    case "EventoAuthError":
      return `EventoDB at ${url} refused the token (${error.reason}): ${error.message}`
    default:
      return `EventoDB at ${url} answered with an error: ${error.message}`
  }
}

// --- running and printing ---

// The runtime installs a pretty logger on stdout; results own stdout here, so the one logger writes to stderr.
const stderrLogger = Logger.prettyLogger({ stderr: true })

/** What a subcommand may fail with; `command` turns each into a `CliError`. */
export type Failure = CliError | SqlError | Migrations.MigrationsError | InvalidConsumerInput

const toCliError = (error: Failure): CliError => {
  switch (error._tag) {
    case "CliError":
      return error
    case "SqlError":
      return new CliError({ message: `database error: ${causeMessage(error.cause)}` })
    case "MigrationsError":
    case "InvalidConsumerInput":
      return new CliError({ message: error.message })
  }
}

/**
 * Wraps a subcommand's work: logs go to stderr (stdout is for results), and database errors become one readable
 * line instead of a stack trace.
 */
export const command = <A, R>(effect: Effect.Effect<A, Failure, R>): Effect.Effect<A, CliError, R> =>
  effect.pipe(
    Effect.mapError(toCliError),
    Effect.locally(FiberRef.currentLoggers, HashSet.make(stderrLogger))
  )

/** Prints `value` as one line of JSON, or `human()` as text. */
export const print = (asJson: boolean, value: unknown, human: () => string) =>
  Console.log(asJson ? JSON.stringify(value) : human())

const numeric = /^-?[\d.,]+$/

/** A plain text table: a header line and one line per row, numbers aligned right; `(none)` without rows. */
export const table = (headers: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  if (rows.length === 0) return `${headers.join("  ")}\n(none)`
  const widths = headers.map((header, i) => Math.max(header.length, ...rows.map((row) => (row[i] ?? "").length)))
  const line = (cells: ReadonlyArray<string>, isHeader: boolean) =>
    cells.map((cell, i) => {
      const width = widths[i] ?? 0
      const right = !isHeader && numeric.test(cell)
      return right ? cell.padStart(width) : cell.padEnd(width)
    }).join("  ").trimEnd()
  return [line(headers, true), ...rows.map((row) => line(row, false))].join("\n")
}

/** `3d 4h`, `2h 5m`, `3m 12s`, `4.2s`: the two largest units. */
export const formatAge = (duration: Duration.Duration): string => {
  const ms = Duration.toMillis(duration)
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`
  const s = Math.floor(ms / 1000)
  const [d, h, m] = [Math.floor(s / 86_400), Math.floor((s % 86_400) / 3600), Math.floor((s % 3600) / 60)]
  if (d > 0) return `${d}d ${h}h`
  if (h > 0) return `${h}h ${m}m`
  return `${m}m ${s % 60}s`
}

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** Checks that every id is a UUID; the ids in lower case, as PostgreSQL prints them. */
export const parseIds = (ids: ReadonlyArray<string>) => {
  const bad = ids.filter((id) => !uuid.test(id))
  return bad.length > 0
    ? fail(`--id must be an outbox row id (a UUID); not one: ${bad.join(", ")}`)
    : Effect.succeed([...new Set(ids.map((id) => id.toLowerCase()))])
}
