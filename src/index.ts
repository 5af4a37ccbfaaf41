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
