/**
 * eventodb-kit: an Effect SDK for EventoDB with a transactional outbox, consumers, singletons and migrations.
 *
 * @since 0.1.0
 */

/**
 * @since 0.1.0
 */
export * as EventoError from "./EventoError.js"

/**
 * @since 0.1.0
 */
export * as EventoClient from "./EventoClient.js"

/**
 * @since 0.1.0
 */
export * as Migrations from "./Migrations.js"

/**
 * @since 0.1.0
 */
export * as Outbox from "./Outbox.js"

/**
 * @since 0.1.0
 */
export * as OutboxSender from "./OutboxSender.js"

/**
 * @since 0.1.0
 */
export * as PositionStore from "./PositionStore.js"

/**
 * @since 0.1.0
 */
export * as Idempotency from "./Idempotency.js"

/**
 * @since 0.1.0
 */
export * as Consumer from "./Consumer.js"

/**
 * @since 0.1.0
 */
export * as Singleton from "./Singleton.js"

/**
 * @since 0.1.0
 */
export * as EventodbKit from "./EventodbKit.js"

/**
 * @since 0.1.0
 */
export * as Cleanup from "./Cleanup.js"
