/**
 * `eventodb-kit migrate up|down|status`: the schema of the kit's tables, through `Migrations`.
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Migrations from "../../Migrations.js"
import { steps } from "../migrations/runner.js"
import * as Common from "./common.js"

// Not `--version`: @effect/cli keeps that name for printing its own version, wherever it appears.
const version = Options.integer("to").pipe(
  Options.optional,
  Options.withDescription("The schema version to reach")
)

const describeMove = (from: number, to: number) =>
  from === to ? `already at version ${to}` : `migrated from version ${from} to version ${to}`

const up = Command.make(
  "up",
  { version, json: Common.json, databaseUrl: Common.databaseUrl },
  (options) =>
    Common.command(Effect.gen(function*() {
      const url = yield* Common.resolveDatabaseUrl(options.databaseUrl)
      const [from, to] = yield* Common.withDatabase(
        url,
        Effect.all([Migrations.currentVersion, Migrations.up({ version: Option.getOrUndefined(options.version) })])
      )
      yield* Common.print(
        options.json,
        { from, to, latest: Migrations.latestVersion },
        () => describeMove(from, to)
      )
    }))
).pipe(Command.withDescription("Create or upgrade the tables (default: to the latest version)"))

const down = Command.make(
  "down",
  { version, json: Common.json, databaseUrl: Common.databaseUrl },
  (options) =>
    Common.command(Effect.gen(function*() {
      const url = yield* Common.resolveDatabaseUrl(options.databaseUrl)
      const [from, to] = yield* Common.withDatabase(
        url,
        Effect.all([
          Migrations.currentVersion,
          Migrations.down({ version: Option.getOrUndefined(options.version) })
        ])
      )
      yield* Common.print(
        options.json,
        { from, to, latest: Migrations.latestVersion },
        () => describeMove(from, to)
      )
    }))
).pipe(Command.withDescription("Go back one version (or to --to N; 0 drops every table)"))

const status = Command.make(
  "status",
  { json: Common.json, databaseUrl: Common.databaseUrl },
  (options) =>
    Common.command(Effect.gen(function*() {
      const url = yield* Common.resolveDatabaseUrl(options.databaseUrl)
      const current = yield* Common.withDatabase(url, Migrations.currentVersion)
      const versions = steps.map((step) => ({
        version: step.version,
        name: step.name,
        applied: step.version <= current
      }))
      yield* Common.print(
        options.json,
        { current, latest: Migrations.latestVersion, versions },
        () =>
          [
            `schema version ${current} of ${Migrations.latestVersion}` +
            (current < Migrations.latestVersion ? " (run `eventodb-kit migrate up`)" : ""),
            "",
            Common.table(
              ["VERSION", "NAME", "APPLIED"],
              versions.map((v) => [String(v.version), v.name, v.applied ? "yes" : "no"])
            )
          ].join("\n")
      )
    }))
).pipe(Command.withDescription("Show the schema version of the database"))

/** `migrate` and its three subcommands. */
export const command = Command.make("migrate").pipe(
  Command.withDescription("Manage the schema of the eventodb-kit tables"),
  Command.withSubcommands([up, down, status])
)
