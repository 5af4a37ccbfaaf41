/**
 * Versioned migrations for the tables eventodb-kit keeps in the application's PostgreSQL: the outbox, consumer
 * positions, processed-event marks and parked messages.
 *
 * Version 1 is the Elixir eventodb_kit's schema, column for column; version 2 adds ordering, a scoped idempotency
 * key, sender bookkeeping and parking, keeping every row. The applied version is recorded in
 * `evento_schema_migrations`. Every run takes a transaction-scoped advisory lock first, so any number of processes
 * may migrate at once; a database recorded at a version newer than this library knows is refused.
 *
 * Tables the Elixir kit created without our version table are adopted: `up` (and `down`) treats them as version 1,
 * converts the column types Ecto chose (`varchar(255)`, `timestamp` holding UTC) to the ones version 1 declares,
 * creates whatever is missing, records version 1 and goes on.
 *
 * @example
 * ```ts
 * import { Migrations } from "eventodb-kit"
 * import * as Effect from "effect/Effect"
 *
 * const program = Effect.gen(function*() {
 *   const version = yield* Migrations.up()
 *   yield* Effect.log("schema ready", version)
 * })
 * ```
 *
 * @since 0.1.0
 */
import type * as Migrator from "@effect/sql/Migrator"
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as runner from "./internal/migrations/runner.js"

/**
 * A migration run refused to go on. `newer-schema`: the database records a version this library does not know.
 * `unknown-schema`: the tables exist in a shape that is neither an unrecorded version 1 nor a recorded version.
 * `invalid-version`: the requested version is not one this library has. `irreversible`: going down would lose rows
 * version 1 cannot hold.
 *
 * @since 0.1.0
 * @category errors
 */
export class MigrationsError extends Schema.TaggedError<MigrationsError>()("MigrationsError", {
  reason: Schema.Literal("newer-schema", "unknown-schema", "invalid-version", "irreversible"),
  message: Schema.String
}) {}

/**
 * The newest version this library knows.
 *
 * @since 0.1.0
 * @category models
 */
export const latestVersion: number = runner.latestVersion

/**
 * @since 0.1.0
 * @category models
 */
export interface UpOptions {
  /** The version to reach. Already at or above it: nothing happens. Default: `latestVersion`. */
  readonly version?: number | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface DownOptions {
  /** The version to go back to; 0 drops every table. Default: one version below the current one. */
  readonly version?: number | undefined
}

const fail = (reason: MigrationsError["reason"], message: string) => new MigrationsError({ reason, message })

/**
 * Migrates up to `options.version` and yields the version the database is at afterwards. Runs in a transaction
 * (joining the caller's, e.g. an `@effect/sql` `Migrator` run) under an advisory lock.
 *
 * @since 0.1.0
 * @category constructors
 */
export const up: (options?: UpOptions) => Effect.Effect<number, MigrationsError | SqlError, SqlClient.SqlClient> =
  Effect.fn("Migrations.up")(function*(options?: UpOptions) {
    return yield* runner.up(options?.version, fail)
  })

/**
 * Migrates down to `options.version` (default: one step) and yields the version the database is at afterwards.
 * Version 2 to 1 keeps the rows of the version-1 tables and drops what version 2 added, parked messages included.
 *
 * @since 0.1.0
 * @category constructors
 */
export const down: (
  options?: DownOptions
) => Effect.Effect<number, MigrationsError | SqlError, SqlClient.SqlClient> = Effect.fn("Migrations.down")(
  function*(options?: DownOptions) {
    return yield* runner.down(options?.version, fail)
  }
)

/**
 * The version the database is at: the recorded one, 1 when version-1 tables exist unrecorded (made by the Elixir
 * kit), 0 when there are none.
 *
 * @since 0.1.0
 * @category accessors
 */
export const currentVersion: Effect.Effect<number, SqlError, SqlClient.SqlClient> = runner.currentVersion.pipe(
  Effect.withSpan("Migrations.currentVersion")
)

/**
 * A loader for an `@effect/sql` `Migrator` dedicated to these migrations (give it a `table` of its own, so its ids
 * do not mix with the application's). Migration `n` runs `up({ version: n })`, so `evento_schema_migrations` stays
 * the record `up`, `down` and `currentVersion` read. See `docs/migrations.md`.
 *
 * @example
 * ```ts
 * import * as PgMigrator from "@effect/sql-pg/PgMigrator"
 * import { Migrations } from "eventodb-kit"
 *
 * const migrate = PgMigrator.run({ loader: Migrations.loader, table: "eventodb_kit_migrations" })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const loader: Migrator.Loader = Effect.succeed(
  runner.steps.map(({ name, version }): Migrator.ResolvedMigration => [
    version,
    `eventodb_kit_${name}`,
    Effect.succeed(up({ version }))
  ])
)
