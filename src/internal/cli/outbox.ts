/**
 * `eventodb-kit outbox parked|requeue|discard`: the operator's view of parked outbox rows and the actions on them,
 * through `OutboxSender`, scoped to one namespace.
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as OutboxSender from "../../OutboxSender.js"
import * as Status from "../status.js"
import * as Common from "./common.js"

const ids = Options.text("id").pipe(
  Options.repeated,
  Options.withDescription("An outbox row id (repeat for several)")
)

const allParked = Options.boolean("all-parked").pipe(
  Options.withDescription("Every parked row of the namespace")
)

const limit = Options.integer("limit").pipe(
  Options.withDefault(100),
  Options.withDescription("Rows to show at most")
)

const shared = {
  namespace: Common.namespace,
  json: Common.json,
  databaseUrl: Common.databaseUrl,
  eventodbToken: Common.eventodbToken
}

const oneLine = (text: string, width: number) => {
  const flat = text.replace(/\s+/g, " ")
  return flat.length > width ? `${flat.slice(0, width - 1)}…` : flat
}

const parked = Command.make("parked", { ...shared, limit }, (options) =>
  Common.command(Effect.gen(function*() {
    if (options.limit < 1) return yield* new Common.CliError({ message: "--limit must be at least 1" })
    const namespace = yield* Common.resolveNamespace(options.namespace, options.eventodbToken)
    const url = yield* Common.resolveDatabaseUrl(options.databaseUrl)
    const rows = yield* Common.withDatabase(
      url,
      Effect.zipRight(Common.requireSchema, OutboxSender.parked(namespace, { limit: options.limit }))
    )
    const view = rows.map((row) => ({
      id: row.id,
      stream: row.stream,
      type: row.type,
      seq: row.seq,
      attempts: row.attempts,
      error: Option.getOrNull(Option.map(row.error, (error) => error._tag)),
      lastError: Option.getOrNull(row.lastError),
      createdAt: row.createdAt.toISOString(),
      parkedAt: row.parkedAt.toISOString()
    }))
    yield* Common.print(options.json, { namespace, rows: view }, () =>
      Common.table(
        ["ID", "STREAM", "TYPE", "SEQ", "ATTEMPTS", "PARKED AT", "ERROR"],
        view.map((row) => [
          row.id,
          row.stream,
          row.type,
          String(row.seq),
          String(row.attempts),
          row.parkedAt,
          oneLine(row.lastError ?? "-", 60)
        ])
      ))
  }))).pipe(Command.withDescription("List the parked outbox rows of a namespace, oldest first"))

type Action = "requeue" | "discard"

const act = (action: Action) =>
  Command.make(action, { ...shared, ids, allParked }, (options) =>
    Common.command(Effect.gen(function*() {
      if (options.ids.length > 0 && options.allParked) {
        return yield* new Common.CliError({ message: "pass either --id or --all-parked, not both" })
      }
      if (options.ids.length === 0 && !options.allParked) {
        return yield* new Common.CliError({ message: "pass --id <outbox id> (one or more) or --all-parked" })
      }
      const requested = yield* Common.parseIds(options.ids)
      const namespace = yield* Common.resolveNamespace(options.namespace, options.eventodbToken)
      const url = yield* Common.resolveDatabaseUrl(options.databaseUrl)

      const { changed, eligible } = yield* Common.withDatabase(
        url,
        Effect.gen(function*() {
          yield* Common.requireSchema
          // The library's actions take ids from any namespace; the CLI keeps an operator inside the one named.
          const eligible = options.allParked
            ? (yield* OutboxSender.parked(namespace, { limit: Number.MAX_SAFE_INTEGER })).map((row) => row.id)
            : yield* Status.outboxIdsIn(namespace, requested, action === "discard")
          const changed = action === "requeue"
            ? yield* OutboxSender.requeue(eligible)
            : yield* OutboxSender.discard(eligible)
          return { changed, eligible }
        })
      )

      const unchanged = requested.filter((id) => !eligible.includes(id))
      const verb = action === "requeue" ? "requeued" : "discarded"
      const what = action === "requeue" ? "unsent" : "parked"
      yield* Common.print(options.json, { namespace, action, changed, ids: eligible, unchanged }, () =>
        [
          `${verb} ${changed} row${changed === 1 ? "" : "s"} in namespace ${namespace}`,
          ...eligible.map((id) => `  ${id}`),
          ...(unchanged.length > 0
            ? [`not ${what} in namespace ${namespace}, left alone:`, ...unchanged.map((id) => `  ${id}`)]
            : [])
        ].join("\n"))
    }))).pipe(
      Command.withDescription(
        action === "requeue"
          ? "Make unsent rows (parked or waiting for a retry) sendable now, attempts starting over"
          : "Delete parked rows, so the rest of their streams goes on without them"
      )
    )

/** `outbox` and its subcommands. */
export const command = Command.make("outbox").pipe(
  Command.withDescription("Inspect and act on parked outbox rows"),
  Command.withSubcommands([parked, act("requeue"), act("discard")])
)
