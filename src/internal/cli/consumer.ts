/**
 * `eventodb-kit consumer reset`: move a consumer's saved position, backwards to replay or forwards to skip, through
 * `PositionStore.reset`.
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as PositionStore from "../../PositionStore.js"
import * as Status from "../status.js"
import * as Common from "./common.js"

const category = Options.text("category").pipe(Options.withDescription("The category the consumer reads"))

const consumerId = Options.text("consumer-id").pipe(
  Options.withDescription("The consumer's id (a group member's own id, e.g. member-0)")
)

const to = Options.integer("to").pipe(
  Options.withDescription("The global position to record as handled; the consumer resumes after it (0: the start)")
)

const clearMarks = Options.boolean("clear-marks").pipe(
  Options.withDescription("Also remove the consumer's processed marks above --to, so a replay handles them again")
)

const force = Options.boolean("force").pipe(
  Options.withDescription("Reset even though the consumer seems to be running (it may overwrite the reset)")
)

const reset = Command.make(
  "reset",
  {
    category,
    consumerId,
    to,
    clearMarks,
    force,
    namespace: Common.namespace,
    json: Common.json,
    databaseUrl: Common.databaseUrl,
    eventodbToken: Common.eventodbToken
  },
  (options) =>
    Common.command(Effect.gen(function*() {
      if (options.category.length === 0 || options.category.includes("-")) {
        return yield* new Common.CliError({
          message: `--category must be a category name (no "-"): ${options.category}`
        })
      }
      if (options.consumerId.length === 0) {
        return yield* new Common.CliError({ message: "--consumer-id must not be empty" })
      }
      if (options.to < 0) return yield* new Common.CliError({ message: "--to must be 0 or more" })
      const namespace = yield* Common.resolveNamespace(options.namespace, options.eventodbToken)
      const url = yield* Common.resolveDatabaseUrl(options.databaseUrl)
      const key: PositionStore.ConsumerKey = { namespace, category: options.category, consumerId: options.consumerId }
      // The name `Consumer.layer` runs under: while its lock is held, the consumer would save over the reset.
      const singleton = `consumer:${namespace}:${options.category}:${options.consumerId}`

      const result = yield* Common.withDatabase(
        url,
        Effect.gen(function*() {
          yield* Common.requireSchema
          if (!options.force && (yield* Status.singletonHeld(singleton))) {
            return yield* new Common.CliError({
              message: `consumer ${options.consumerId} of ${namespace}/${options.category} is running (its singleton ` +
                `lock ${singleton} is held): stop it first, or pass --force`
            })
          }
          const store = yield* PositionStore.make
          const sql = yield* SqlClient.SqlClient
          return yield* Effect.gen(function*() {
            const previous = yield* store.load(key)
            yield* store.reset(key, options.to)
            const marksCleared = options.clearMarks ? yield* Status.clearMarksAbove(key, options.to) : 0
            const marksAbove = yield* Status.marksAbove(key, options.to)
            return { previous, marksCleared, marksAbove }
          }).pipe(sql.withTransaction)
        })
      )

      const previous = Option.getOrNull(result.previous)
      yield* Common.print(
        options.json,
        { ...key, previous, position: options.to, marksCleared: result.marksCleared, marksAbove: result.marksAbove },
        () =>
          [
            `consumer ${options.consumerId} of ${namespace}/${options.category}: position ${
              previous === null ? "(none)" : previous
            } -> ${options.to}`,
            ...(result.marksCleared > 0 ? [`removed ${result.marksCleared} processed marks above ${options.to}`] : []),
            ...(result.marksAbove > 0
              ? [
                `${result.marksAbove} messages above ${options.to} are marked as processed and will be skipped; ` +
                "pass --clear-marks to handle them again"
              ]
              : [])
          ].join("\n")
      )
    }))
).pipe(Command.withDescription("Set a consumer's saved position (stop the consumer first)"))

/** `consumer` and its subcommands. */
export const command = Command.make("consumer").pipe(
  Command.withDescription("Act on consumer positions"),
  Command.withSubcommands([reset])
)
