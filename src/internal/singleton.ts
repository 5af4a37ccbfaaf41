import type * as PgClient from "@effect/sql-pg/PgClient"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import { createHash } from "node:crypto"
import pg from "pg"

/** What `Singleton.run` accepts; the public module documents the fields. */
export interface RunOptions {
  readonly pollInterval?: Duration.DurationInput | undefined
  readonly verifyInterval?: Duration.DurationInput | undefined
}

/** The service shape; the public module re-exports it as `Singleton.Service`. */
export interface Service {
  readonly run: <A, E, R>(
    name: string,
    effect: Effect.Effect<A, E, R>,
    options?: RunOptions
  ) => Effect.Effect<A, E | SingletonError, R>
}

/** `run` was given a name or options it cannot work with; the public module documents it. */
export class SingletonError extends Schema.TaggedError<SingletonError>()("SingletonError", {
  message: Schema.String,
  reason: Schema.Literal("invalid-name", "invalid-options")
}) {}

const defaultPollInterval = Duration.seconds(1)
const defaultVerifyInterval = Duration.seconds(2)

const invalidName = (name: unknown): SingletonError | undefined =>
  typeof name === "string" && name.length > 0 ? undefined : new SingletonError({
    reason: "invalid-name",
    message: `A singleton name is a non-empty string, not ${typeof name === "string" ? "\"\"" : String(name)}`
  })

// A zero interval would spin on the database; a zero verifyInterval would also remove the fence that keeps an old
// and a new holder from running together, and an infinite one would never start the effect.
const interval = (
  options: unknown,
  field: "pollInterval" | "verifyInterval",
  fallback: Duration.Duration
): Either.Either<Duration.Duration, SingletonError> => {
  const value = (options as RunOptions | undefined)?.[field]
  if (value === undefined) return Either.right(fallback)
  const decoded = Duration.decodeUnknown(value)
  return Option.isSome(decoded) && Duration.isFinite(decoded.value) &&
      Duration.greaterThan(decoded.value, Duration.zero)
    ? Either.right(decoded.value)
    : Either.left(
      new SingletonError({
        reason: "invalid-options",
        message: `options.${field} must be a positive, finite duration, not ${String(value)}`
      })
    )
}

interface Settings {
  readonly pollInterval: Duration.Duration
  readonly verifyInterval: Duration.Duration
}

/** The checked intervals of a `run`, or why its name or options are refused. */
const settingsOf = (
  name: unknown,
  options: unknown
): Either.Either<Settings, SingletonError> => {
  const badName = invalidName(name)
  if (badName !== undefined) return Either.left(badName)
  if (options !== undefined && (typeof options !== "object" || options === null || Array.isArray(options))) {
    return Either.left(new SingletonError({ reason: "invalid-options", message: "options must be an object" }))
  }
  return Either.all({
    pollInterval: interval(options, "pollInterval", defaultPollInterval),
    verifyInterval: interval(options, "verifyInterval", defaultVerifyInterval)
  })
}

/**
 * The advisory lock key of a singleton name: the first 8 bytes of md5(name) as a signed big-endian 64-bit integer,
 * the same value as PostgreSQL's `('x' || left(md5(name), 16))::bit(64)::bigint`.
 */
export const lockKey = (name: string): bigint => createHash("md5").update(name, "utf8").digest().readBigInt64BE(0)

/** The lock connection broke, timed out or answered something unexpected. Never leaves `run`. */
export class LockConnectionError extends Data.TaggedError("LockConnectionError")<{
  readonly reason: string
  readonly cause?: unknown
}> {}

/** One database session of a singleton's own: the lock lives and dies with it. */
export interface LockConnection {
  readonly query: (
    text: string,
    values: ReadonlyArray<string>
  ) => Effect.Effect<ReadonlyArray<unknown>, LockConnectionError>
  /** Completes when the session reports an error or ends, whoever ended it. */
  readonly broken: Effect.Effect<void>
}

/**
 * Opens a lock connection in the given scope. `statementTimeout` bounds every statement on the server side;
 * `idleTimeout` lets the server end the session when the client stops talking (see `sessionSettingsSql`).
 */
export type Connect = (options: {
  readonly statementTimeout: Duration.Duration
  readonly idleTimeout: Duration.Duration
}) => Effect.Effect<LockConnection, LockConnectionError, Scope.Scope>

const defaultConnectTimeout = Duration.seconds(5)
const closeTimeout = Duration.seconds(1)

/**
 * A dedicated `pg.Client` per candidate, opened with the application's `PgClient` settings but outside its pool: a
 * session lock taken through a pool stays on whichever pooled connection ran it, and many singletons would starve it.
 */
export const pgConnect = (config: PgClient.PgClientConfig): Connect => ({ idleTimeout, statementTimeout }) =>
  Effect.gen(function*() {
    const broken = yield* Deferred.make<void>()
    const connectTimeout = Duration.decode(config.connectTimeout ?? defaultConnectTimeout)
    const client = new pg.Client({
      connectionString: config.url ? Redacted.value(config.url) : undefined,
      host: config.host,
      port: config.port,
      database: config.database,
      user: config.username,
      password: config.password ? Redacted.value(config.password) : undefined,
      ssl: config.ssl,
      ...(config.stream ? { stream: config.stream } : {}),
      keepAlive: true,
      connectionTimeoutMillis: Duration.toMillis(connectTimeout),
      application_name: "eventodb-kit/singleton"
    })
    // Without an "error" listener a dropped session would crash the process; the listener stays for the client's life.
    const markBroken = () => Deferred.unsafeDone(broken, Exit.void)
    client.on("error", markBroken)
    client.on("end", markBroken)
    yield* Effect.addFinalizer(() => close(client))

    const settings = [millis(statementTimeout), millis(idleTimeout)]
    yield* Effect.tryPromise({
      try: () => client.connect().then(() => client.query(sessionSettingsSql, settings)),
      catch: (cause) => new LockConnectionError({ reason: "connect failed", cause })
    }).pipe(
      Effect.timeoutFail({
        duration: connectTimeout,
        onTimeout: () => new LockConnectionError({ reason: "connect timed out" })
      })
    )

    return {
      query: (text, values) =>
        Effect.tryPromise({
          try: () => client.query(text, [...values]),
          catch: (cause) => new LockConnectionError({ reason: "statement failed", cause })
        }).pipe(
          Effect.map((result): ReadonlyArray<unknown> => result.rows),
          // Even in a finalizer a timeout must be able to abandon a statement on a connection that stopped answering.
          Effect.interruptible
        ),
      broken: Deferred.await(broken)
    }
  })

const millis = (duration: Duration.Duration) => String(Math.max(1, Math.ceil(Duration.toMillis(duration))))

// Set by a statement rather than as startup parameters, which poolers may refuse. When the client vanishes without
// closing its socket (a partition), the server would keep the session, and the lock, until TCP keepalive gives up,
// hours later; idle_session_timeout (PostgreSQL 14+) ends it once the regular checks stop arriving.
const sessionSettingsSql = `SELECT
  set_config('statement_timeout', $1, false),
  CASE WHEN current_setting('server_version_num')::int >= 140000
    THEN set_config('idle_session_timeout', $2, false)
  END`

const close = (client: pg.Client) =>
  Effect.promise(() => client.end().catch(() => undefined)).pipe(
    Effect.interruptible,
    Effect.timeoutOption(closeTimeout),
    // A half-open socket never answers the goodbye; drop it rather than wait for TCP keepalive.
    Effect.flatMap(Option.match({
      onNone: () => Effect.sync(() => client.connection.stream.destroy()),
      onSome: () => Effect.void
    }))
  )

const TryLockRow = Schema.Struct({ locked: Schema.Boolean, pid: Schema.Number })
const VerifyRow = Schema.Struct({ held: Schema.Boolean, pid: Schema.Number })

const decodeOne = <A, I>(schema: Schema.Schema<A, I>) => {
  const decode = Schema.decodeUnknown(Schema.Tuple(schema))
  return (rows: ReadonlyArray<unknown>) =>
    decode(rows).pipe(
      Effect.map(([row]) => row),
      Effect.mapError((cause) => new LockConnectionError({ reason: "unexpected answer", cause }))
    )
}

const decodeTryLock = decodeOne(TryLockRow)
const decodeVerify = decodeOne(VerifyRow)

const tryLockSql = "SELECT pg_try_advisory_lock($1::bigint) AS locked, pg_backend_pid() AS pid"

// A bigint advisory key shows in pg_locks as classid (high half) and objid (low half) with objsubid 1.
const verifySql = `SELECT EXISTS (
  SELECT 1
  FROM pg_locks
  WHERE locktype = 'advisory'
    AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND pid = pg_backend_pid()
    AND granted
    AND objsubid = 1
    AND ((classid::bigint << 32) | objid::bigint) = $1::bigint
) AS held, pg_backend_pid() AS pid`

const unlockSql = "SELECT pg_advisory_unlock($1::bigint) AS unlocked"

type Attempt<A, E> =
  | { readonly _tag: "Done"; readonly exit: Exit.Exit<A, E> }
  | { readonly _tag: "Lost" }
  | { readonly _tag: "Failed"; readonly error: LockConnectionError; readonly connected: boolean }

const reasonOf = (error: LockConnectionError): string =>
  error.cause instanceof Error ? `${error.reason}: ${error.cause.message}` : error.reason

/** The PostgreSQL service: every `run` competes on connections that `connect` opens for it alone. */
export const make = (connect: Connect): Service => ({
  run: <A, E, R>(name: string, effect: Effect.Effect<A, E, R>, options?: RunOptions) =>
    // Checked inside the effect: a bad name must fail the effect, never throw while it is being built.
    Effect.suspend((): Effect.Effect<A, E | SingletonError, R> =>
      Either.match(settingsOf(name, options), {
        onLeft: (error) => Effect.fail(error),
        onRight: (settings) => runChecked(connect, name, effect, settings)
      })
    )
})

const runChecked = <A, E, R>(
  connect: Connect,
  name: string,
  effect: Effect.Effect<A, E, R>,
  { pollInterval, verifyInterval }: Settings
): Effect.Effect<A, E, R> => {
  // Each check gives up after half an interval, so a holder whose lock is gone stops its effect at most 1.5
  // intervals later; a new holder waits 2 intervals, which leaves half an interval for the effect to wind down.
  const checkTimeout = Duration.times(verifyInterval, 0.5)
  const fence = Duration.times(verifyInterval, 2)
  // Holders speak every verifyInterval, waiting nodes every pollInterval: twice the longer, plus slack for pauses.
  const idleTimeout = Duration.sum(Duration.times(Duration.max(pollInterval, verifyInterval), 2), Duration.seconds(1))
  const key = lockKey(name).toString()
  const annotations = { package: "eventodb-kit", module: "Singleton", singleton: name }
  const log = <X, Y, Z>(self: Effect.Effect<X, Y, Z>) => Effect.annotateLogs(self, annotations)

  const statement = <T>(
    connection: LockConnection,
    text: string,
    decode: (rows: ReadonlyArray<unknown>) => Effect.Effect<T, LockConnectionError>
  ) =>
    connection.query(text, [key]).pipe(
      Effect.timeoutFail({
        duration: checkTimeout,
        onTimeout: () => new LockConnectionError({ reason: "statement timed out" })
      }),
      Effect.flatMap(decode)
    )

  // try_lock is only ever repeated while it answers false, so the session never holds the lock twice.
  const acquire = (connection: LockConnection) => {
    let waiting = false
    const wait = Effect.suspend(() => {
      const first = !waiting
      waiting = true
      return first ? log(Effect.logDebug("singleton waiting")) : Effect.void
    }).pipe(Effect.zipRight(Effect.sleep(pollInterval)))
    return statement(connection, tryLockSql, decodeTryLock).pipe(
      Effect.tap((row) => row.locked ? Effect.void : wait),
      Effect.repeat({ until: (row) => row.locked }),
      Effect.map((row) => row.pid)
    )
  }

  // Succeeds with a reason once the lock is in doubt: the session broke, or a check failed or said no.
  const watch = (connection: LockConnection, pid: number): Effect.Effect<string> => {
    const check = statement(connection, verifySql, decodeVerify).pipe(
      Effect.flatMap((row) =>
        row.held && row.pid === pid
          ? Effect.void
          : Effect.fail(new LockConnectionError({ reason: row.held ? "session changed" : "lock not held" }))
      )
    )
    return Effect.raceFirst(
      Effect.as(connection.broken, "connection closed"),
      check.pipe(
        Effect.repeat(Schedule.fixed(verifyInterval)),
        // The schedule never ends: only a failed check gets out of this loop.
        Effect.matchEffect({ onFailure: (error) => Effect.succeed(reasonOf(error)), onSuccess: () => Effect.never })
      )
    )
  }

  const attempt: Effect.Effect<Attempt<A, E>, never, R> = Effect.acquireUseRelease(
    Scope.make(),
    (scope) => {
      let connected = false
      return Effect.gen(function*() {
        const connection = yield* Scope.extend(connect({ statementTimeout: checkTimeout, idleTimeout }), scope)
        connected = true
        const pid = yield* acquire(connection)
        let lost = false
        // Runs after the guarded effect has fully stopped, before the connection closes.
        yield* Scope.addFinalizer(
          scope,
          Effect.suspend(() =>
            statement(connection, unlockSql, Effect.succeed).pipe(
              Effect.ignore,
              Effect.zipRight(lost ? Effect.void : log(Effect.logInfo("singleton released")))
            )
          )
        )
        yield* log(Effect.logInfo("singleton acquired").pipe(Effect.annotateLogs("pid", pid)))

        // PostgreSQL frees a dead session's lock at once, but its old holder notices only at its next check:
        // start the effect after the fence so the two never run together.
        const outcome = yield* Effect.raceFirst(
          Effect.sleep(fence).pipe(
            Effect.zipRight(Effect.exit(effect)),
            Effect.map((exit): Attempt<A, E> => ({ _tag: "Done", exit }))
          ),
          watch(connection, pid).pipe(
            Effect.tap((reason) => {
              lost = true
              return log(Effect.logWarning("singleton lost").pipe(Effect.annotateLogs("reason", reason)))
            }),
            Effect.as<Attempt<A, E>>({ _tag: "Lost" })
          )
        )
        return outcome
      }).pipe(
        Effect.catchTag(
          "LockConnectionError",
          (error) => Effect.succeed<Attempt<A, E>>({ _tag: "Failed", error, connected })
        )
      )
    },
    (scope, exit) => Scope.close(scope, exit)
  )

  // Never gives up on the database: after downtime the node competes again by itself (fail closed, not dead).
  // The first failure of a streak is a warning; the retries that follow while the database stays away are debug.
  const loop = (failures: number): Effect.Effect<A, E, R> =>
    Effect.flatMap(attempt, (result) => {
      switch (result._tag) {
        case "Done":
          return result.exit
        case "Lost":
          // Step back for two polls so that a node that still reaches the database takes over first.
          return Effect.zipRight(Effect.sleep(Duration.times(pollInterval, 2)), Effect.suspend(() => loop(0)))
        case "Failed": {
          const streak = result.connected ? 0 : failures
          const logged = (streak === 0 ? Effect.logWarning : Effect.logDebug)("singleton connection failed")
          return log(logged.pipe(Effect.annotateLogs("error", reasonOf(result.error)))).pipe(
            Effect.zipRight(Effect.sleep(pollInterval)),
            Effect.zipRight(Effect.suspend(() => loop(streak + 1)))
          )
        }
      }
    })

  return Effect.suspend(() => loop(0)).pipe(
    Effect.withSpan("Singleton.run", { attributes: { "singleton.name": name } })
  )
}

/** The in-process service: one lock table per service, the same exclusion without a database. */
export const makeMemory = (): Service => {
  const locks = new Map<string, Effect.Semaphore>()
  const lockFor = (name: string): Effect.Semaphore => {
    const existing = locks.get(name)
    if (existing !== undefined) return existing
    const created = Effect.unsafeMakeSemaphore(1)
    locks.set(name, created)
    return created
  }
  return {
    run: <A, E, R>(
      name: string,
      effect: Effect.Effect<A, E, R>,
      options?: RunOptions
    ): Effect.Effect<A, E | SingletonError, R> => {
      const log = (message: string) =>
        Effect.logInfo(message).pipe(
          Effect.annotateLogs({ package: "eventodb-kit", module: "Singleton", singleton: name })
        )
      // The options do nothing here, but are checked as the PostgreSQL service checks them: a test on this service
      // must not pass with settings that production refuses.
      return Effect.suspend((): Effect.Effect<A, E | SingletonError, R> =>
        Either.match(settingsOf(name, options), {
          onLeft: (error) => Effect.fail(error),
          onRight: () =>
            lockFor(name).withPermits(1)(
              log("singleton acquired").pipe(Effect.zipRight(effect), Effect.ensuring(log("singleton released")))
            ).pipe(Effect.withSpan("Singleton.run", { attributes: { "singleton.name": name } }))
        })
      )
    }
  }
}
