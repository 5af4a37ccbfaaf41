/**
 * One shared poke subscription per client and category, for every consumer of that category in the process.
 *
 * Pokes are hints: the server drops them when a subscriber lags and filters consumer groups live with a hash of its
 * own, so the hub subscribes without group parameters and hands out only global positions. Each consumer decides
 * whether a position is news to it; the fetch from its checkpoint stays the truth.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as PubSub from "effect/PubSub"
import type * as Queue from "effect/Queue"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { EventoClient } from "../EventoClient.js"

interface Hub {
  refs: number
  readonly pubsub: PubSub.PubSub<number>
  readonly scope: Scope.CloseableScope
}

// Keyed by the client instance, so hubs never outlive the clients they read with and two namespaces never share
// one. The categories inside come from running consumers and leave with them (reference counted).
const hubs = new WeakMap<EventoClient.Service, Map<string, Hub>>()
const lock = Effect.unsafeMakeSemaphore(1)

// Enough to keep the newest positions of a burst; older ones only repeat what a fetch will find anyway.
const capacity = 64
const reconnectBase = Duration.millis(100)
const reconnectCap = Duration.seconds(30)

const reconnectDelay = (failures: number): Duration.Duration =>
  Duration.min(Duration.times(reconnectBase, 2 ** Math.min(failures - 1, 16)), reconnectCap)

/**
 * Reads pokes for ever. A stream that ends or fails is opened again from the position after the newest poke seen,
 * after a delay that grows while sessions keep failing before delivering anything (an auth failure must not turn
 * into a tight loop) and starts over once one delivered.
 */
const follow = (client: EventoClient.Service, category: string, pubsub: PubSub.PubSub<number>, start: number) =>
  Effect.gen(function*() {
    let position = start
    let failures = 0
    while (true) {
      let delivered = false
      const exit = yield* client.subscribe({ category }, { position }).pipe(
        Stream.runForEach((poke) => {
          delivered = true
          position = Math.max(position, poke.globalPosition + 1)
          return PubSub.publish(pubsub, poke.globalPosition)
        }),
        Effect.exit
      )
      failures = delivered ? 1 : failures + 1
      if (Exit.isFailure(exit)) {
        yield* Effect.logWarning("Poke subscription failed; reconnecting", exit.cause).pipe(
          Effect.annotateLogs({ failures })
        )
      } else {
        yield* Effect.logDebug("Poke subscription ended; reconnecting")
      }
      yield* Effect.sleep(reconnectDelay(failures))
    }
  }).pipe(
    Effect.annotateLogs({ package: "eventodb-kit", module: "Consumer", fiber: "pokes", category })
  )

const acquire = (client: EventoClient.Service, category: string, start: number) =>
  Effect.gen(function*() {
    let byCategory = hubs.get(client)
    if (byCategory === undefined) {
      byCategory = new Map()
      hubs.set(client, byCategory)
    }
    const existing = byCategory.get(category)
    if (existing !== undefined) {
      existing.refs += 1
      return existing
    }

    const pubsub = yield* PubSub.sliding<number>(capacity)
    const scope = yield* Scope.make()
    // The acquisition runs uninterruptibly and a fork inherits that; the follower must stay interruptible so that
    // closing the scope can stop it.
    yield* Effect.forkIn(Effect.interruptible(follow(client, category, pubsub, start)), scope)
    const hub: Hub = { refs: 1, pubsub, scope }
    byCategory.set(category, hub)
    return hub
  })

const release = (client: EventoClient.Service, category: string, hub: Hub) =>
  Effect.suspend(() => {
    hub.refs -= 1
    if (hub.refs > 0) return Effect.void
    const byCategory = hubs.get(client)
    byCategory?.delete(category)
    if (byCategory !== undefined && byCategory.size === 0) hubs.delete(client)
    return Effect.zipRight(Scope.close(hub.scope, Exit.void), PubSub.shutdown(hub.pubsub))
  })

/**
 * The global positions of pokes for `category`, from a subscription shared with every other consumer of the same
 * client and category. `start` is where a new subscription begins (later consumers join the running one). The
 * queue is bounded and keeps the newest positions; the subscription closes when the last user's scope closes.
 */
export const subscribe = (
  client: EventoClient.Service,
  category: string,
  start: number
): Effect.Effect<Queue.Dequeue<number>, never, Scope.Scope> =>
  Effect.acquireRelease(
    lock.withPermits(1)(acquire(client, category, start)),
    (hub) => lock.withPermits(1)(release(client, category, hub))
  ).pipe(Effect.flatMap((hub) => PubSub.subscribe(hub.pubsub)))
