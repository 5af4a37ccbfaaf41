/**
 * `eventodb-kit status`: per namespace, the outbox backlog (unsent, parked, retrying, oldest unsent age); per
 * consumer, its saved position, the newest global position of its category in EventoDB, the lag between them and
 * its parked messages.
 */
import * as Command from "@effect/cli/Command"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as OutboxSender from "../../OutboxSender.js"
import * as Status from "../status.js"
import { decodeNamespace } from "../token.js"
import * as Common from "./common.js"

interface ConsumerStatus {
  readonly namespace: string
  readonly category: string
  readonly consumerId: string
  readonly position: number | null
  readonly head: number | null
  readonly lag: number | null
  readonly parkedMessages: number
  readonly updatedAt: string | null
}

const toNull = <A>(option: Option.Option<A>): A | null => Option.getOrNull(option)

export const command = Command.make(
  "status",
  {
    namespace: Common.namespace,
    json: Common.json,
    databaseUrl: Common.databaseUrl,
    eventodbUrl: Common.eventodbUrl,
    eventodbToken: Common.eventodbToken
  },
  (options) =>
    Common.command(
      Effect.gen(function*() {
        const url = yield* Common.resolveDatabaseUrl(options.databaseUrl)
        const token = yield* Common.resolveToken(options.eventodbToken)
        const eventodbUrl = yield* Common.resolveEventodbUrl(options.eventodbUrl)
        // Heads come from EventoDB, and a token reaches one namespace: the consumers of that one get a lag.
        const client = yield* Option.match(token, {
          onNone: () => Effect.succeedNone,
          onSome: (value) => Effect.asSome(Common.makeClient(eventodbUrl, value))
        })
        const tokenNamespace = Option.flatMap(token, (value) => Option.getRight(decodeNamespace(Redacted.value(value))))

        const { consumers, namespaces, schemaVersion } = yield* Common.withDatabase(
          url,
          Effect.gen(function*() {
            const schemaVersion = yield* Common.requireSchema
            const known = yield* Status.namespaces
            const names = Option.match(options.namespace, {
              onSome: (name) => [name],
              onNone: () => [...new Set([...known, ...Option.toArray(tokenNamespace)])].sort()
            })
            const namespaces = yield* Effect.forEach(names, (name) =>
              Effect.map(OutboxSender.backlog(name), (backlog) => ({
                namespace: name,
                unsent: backlog.unsent,
                parked: backlog.parked,
                retrying: backlog.retrying,
                oldestUnsentAt: toNull(Option.map(backlog.oldestUnsentAt, (date) =>
                  date.toISOString())),
                oldestUnsentAgeSeconds: toNull(Option.map(backlog.oldestUnsentAge, Duration.toSeconds))
              })))
            const consumers = yield* Status.consumers(options.namespace)
            return { consumers, namespaces, schemaVersion }
          })
        )

        // One head search per category, from the lowest position among its consumers: the others can reuse it.
        const reachable = (consumer: Status.ConsumerRow) =>
          Option.contains(tokenNamespace, consumer.namespace)
        const searchFrom = new Map<string, number>()
        for (const consumer of consumers.filter(reachable)) {
          const from = Option.getOrElse(consumer.position, () => 0) + 1
          searchFrom.set(consumer.category, Math.min(from, searchFrom.get(consumer.category) ?? from))
        }
        const heads = new Map(
          yield* Option.match(client, {
            onNone: () => Effect.succeed([]),
            onSome: (service) =>
              Effect.forEach(searchFrom, ([category, from]) =>
                Status.categoryHead(service, category, from).pipe(
                  Effect.map((head) => [category, head] as const),
                  Effect.mapError((error) =>
                    new Common.CliError({ message: Common.describeEventoError(eventodbUrl, error) })
                  )
                ))
          })
        )

        const consumerStatus = consumers.map((consumer): ConsumerStatus => {
          const position = Option.getOrElse(consumer.position, () => 0)
          // Nothing after the saved position means caught up: the head is then the position itself.
          const head = Option.map(
            Option.filter(Option.fromNullable(heads.get(consumer.category)), () => reachable(consumer)),
            (found) => Option.getOrElse(Option.map(found, (h) => Math.max(h, position)), () => position)
          )
          return {
            namespace: consumer.namespace,
            category: consumer.category,
            consumerId: consumer.consumerId,
            position: toNull(consumer.position),
            head: toNull(head),
            lag: toNull(Option.map(head, (h) => h - position)),
            parkedMessages: consumer.parkedMessages,
            updatedAt: toNull(Option.map(consumer.updatedAt, (date) => date.toISOString()))
          }
        })

        const eventodb = Option.match(tokenNamespace, {
          onNone: () => null,
          onSome: (name) => ({ url: eventodbUrl, namespace: name })
        })
        yield* Common.print(
          options.json,
          { schemaVersion, namespaces, consumers: consumerStatus, eventodb },
          () =>
            [
              "Outbox",
              Common.table(
                ["NAMESPACE", "UNSENT", "PARKED", "RETRYING", "OLDEST UNSENT"],
                namespaces.map((n) => [
                  n.namespace,
                  String(n.unsent),
                  String(n.parked),
                  String(n.retrying),
                  n.oldestUnsentAgeSeconds === null ? "-" : Common.formatAge(Duration.seconds(n.oldestUnsentAgeSeconds))
                ])
              ),
              "",
              "Consumers",
              Common.table(
                ["NAMESPACE", "CATEGORY", "CONSUMER", "POSITION", "HEAD", "LAG", "PARKED", "UPDATED"],
                consumerStatus.map((c) => [
                  c.namespace,
                  c.category,
                  c.consumerId,
                  c.position === null ? "-" : String(c.position),
                  c.head === null ? "-" : String(c.head),
                  c.lag === null ? "-" : String(c.lag),
                  String(c.parkedMessages),
                  c.updatedAt ?? "-"
                ])
              ),
              ...(eventodb === null ? ["", "(HEAD and LAG need EVENTODB_TOKEN, or --eventodb-token)"] : [])
            ].join("\n")
        )
      }).pipe(Effect.provide(Common.httpClient))
    )
).pipe(
  Command.withDescription(
    "Show outbox backlogs and consumer positions; with EVENTODB_TOKEN, the lag of that namespace's consumers"
  )
)
