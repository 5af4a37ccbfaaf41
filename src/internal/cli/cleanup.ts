/**
 * `eventodb-kit cleanup`: one pass of `Cleanup.once`, pruning sent outbox rows and processed marks that
 * deduplication no longer needs.
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Cleanup from "../../Cleanup.js"
import * as Common from "./common.js"

const markWindow = Options.integer("mark-window").pipe(
  Options.withDefault(10_000),
  Options.withDescription("Keep marks within this many global positions below their consumer's saved position")
)

const dryRun = Options.boolean("dry-run").pipe(
  Options.withDescription("Count what would be removed, and remove nothing")
)

const namespace = Options.text("namespace").pipe(
  Options.optional,
  Options.withDescription("Prune only this namespace; default: every namespace")
)

export const command = Command.make(
  "cleanup",
  {
    namespace,
    sentOlderThan: Common.duration("sent-older-than", "7d"),
    marksOlderThan: Common.duration("marks-older-than", "7d"),
    markWindow,
    dryRun,
    json: Common.json,
    databaseUrl: Common.databaseUrl
  },
  (options) =>
    Common.command(Effect.gen(function*() {
      if (options.markWindow < 0) return yield* new Common.CliError({ message: "--mark-window must be 0 or more" })
      const url = yield* Common.resolveDatabaseUrl(options.databaseUrl)
      const result = yield* Common.withDatabase(
        url,
        Effect.zipRight(
          Common.requireSchema,
          Cleanup.once({
            namespace: Option.getOrUndefined(options.namespace),
            sentRetention: options.sentOlderThan,
            markRetention: options.marksOlderThan,
            markWindow: options.markWindow,
            dryRun: options.dryRun
          })
        )
      )
      const verb = options.dryRun ? "would remove" : "removed"
      yield* Common.print(
        options.json,
        {
          dryRun: options.dryRun,
          sentOlderThanSeconds: Duration.toSeconds(options.sentOlderThan),
          marksOlderThanSeconds: Duration.toSeconds(options.marksOlderThan),
          markWindow: options.markWindow,
          ...result
        },
        () =>
          [
            `${verb} ${result.sentRows} sent outbox rows and ${result.marks} processed marks`,
            ...(result.namespaces.length > 0
              ? [
                "",
                Common.table(
                  ["NAMESPACE", "SENT ROWS", "MARKS"],
                  result.namespaces.map((n) => [n.namespace, String(n.sentRows), String(n.marks)])
                )
              ]
              : [])
          ].join("\n")
      )
    }))
).pipe(
  Command.withDescription(
    "Remove sent outbox rows older than --sent-older-than, and processed marks older than --marks-older-than " +
      "below their consumer's position minus --mark-window"
  )
)
