/**
 * Types of harper_resources' client.js: one live resource path in the browser, with reconnects and resumes.
 * See the header of client.js and the README's "JavaScript client" section.
 */

/** A record's primary key as JSON: a number for integer keys, text for UUID and text keys. */
export type RecordId = number | string;

/** `put`: the whole current record. */
export interface PutFrame<T = Record<string, unknown>> {
  type: 'put';
  id: RecordId;
  value: T;
  /** The record's version, ms since the epoch; increases with every committed change of the record. */
  version: number;
  /** When the server made the frame, ms since the epoch. */
  localTime: number;
}

/** `delete`: the record is gone (the socket stays open; a re-created record arrives as a `put`). */
export interface DeleteFrame {
  type: 'delete';
  id: RecordId;
  version: number;
  localTime: number;
}

/** `message`: a value published to a record (`await self.publish(value)` on the server). */
export interface MessageFrame<M = unknown> {
  type: 'message';
  id: RecordId;
  value: M;
  /** The publish time, not a record version: messages are not resumed. */
  version: number;
  localTime: number;
}

/** `reset`: a resume asked for more than the change log keeps; the full current state follows. */
export interface ResetFrame {
  type: 'reset';
  version: number;
}

export type ConnectionState = 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface StateInfo {
  state: ConnectionState;
  /** A sentence for people ("Not logged in: log in to see this."), never a bare close code. */
  text: string;
  /** The close code that caused this state, if a close did. */
  code?: number;
  /** The close reason the server sent, if any (daphne sends none). */
  reason?: string;
  /** `reconnecting` after a close: ms until the next attempt. */
  delay?: number;
  /** `reconnecting`: how many attempts were made since the connection last stayed up. */
  attempt?: number;
  /** `closed`: true, the client will not reconnect (a permanent refusal, `close()`, or a 1000 from the server). */
  permanent?: boolean;
}

export interface ConnectOptions<T = Record<string, unknown>, M = unknown> {
  /** A `put`: the record `id` now holds `value`. Never called twice for the same state, nor with an older one. */
  onRecord?(this: ResourceConnection<T, M>, id: RecordId, value: T, frame: PutFrame<T>): void;
  /** A `delete`: the record `id` is gone. */
  onDelete?(this: ResourceConnection<T, M>, id: RecordId, frame: DeleteFrame): void;
  /**
   * A `message` frame (`value` is its payload, `frame` the whole frame), or anything else the resource sends
   * itself, such as the demo's status pulse (`value` and `frame` are then the same decoded JSON; text that is not
   * JSON arrives as a string, a binary frame as an ArrayBuffer).
   */
  onMessage?(this: ResourceConnection<T, M>, value: M, frame: MessageFrame<M> | unknown): void;
  /** The resume was too old for the server's change log: drop every record you show; the full state follows. */
  onReset?(this: ResourceConnection<T, M>, frame: ResetFrame): void;
  /** Every state change: for a status badge. */
  onStateChange?(this: ResourceConnection<T, M>, state: ConnectionState, info: StateInfo): void;
  /** First reconnect delay's ceiling in ms (default 500); doubles per failed attempt. */
  minDelay?: number;
  /** Largest reconnect delay's ceiling in ms (default 15000). Each delay is drawn between half and all of it. */
  maxDelay?: number;
  /**
   * On a collection, how far (ms) before the newest version held a resume's `since` reaches (default 60000):
   * versions of different records do not follow commit order. Repeated states are skipped.
   */
  resumeOverlap?: number;
  /** WebSocket subprotocols to offer. */
  protocols?: string | string[];
  /** Base URL for a relative path (default: the page's address). */
  base?: string;
  /** The WebSocket class to use (default: the browser's); tests pass a fake. */
  WebSocket?: typeof WebSocket;
  /** Random numbers in [0, 1) for the jitter (default Math.random). */
  random?: () => number;
}

export class ResourceConnection<T = Record<string, unknown>, M = unknown> {
  constructor(path: string, options?: ConnectOptions<T, M>);
  readonly path: string;
  readonly state: ConnectionState;
  /** The version of the newest `put`/`delete` received per record (keyed by the id's JSON text). */
  readonly versions: Map<string, number>;
  /** The newest version of any record received, or null before the first `put`/`delete`: the next `since`. */
  readonly lastVersion: number | null;
  /** The URL the next attempt opens (with `since` once a record arrived). */
  readonly url: string;
  /** Send `value` as JSON (binary data as a binary frame). False if not connected: nothing is queued. */
  send(value: unknown): boolean;
  /** Close for good and stop reconnecting. */
  close(code?: number, reason?: string): void;
}

/** Open `path` (`/dog/341`, `/dog/`, or an absolute ws:/wss: URL) and keep it open. */
export function connect<T = Record<string, unknown>, M = unknown>(
  path: string,
  options?: ConnectOptions<T, M>,
): ResourceConnection<T, M>;

/** A sentence for people about a close code (40xx read as their 10xx). */
export function closeText(code: number): string;

/** True for the codes after which the client does not reconnect: 3000, 3003, 4400, 4404, 4406. */
export function isPermanentClose(code: number): boolean;

/** The ws:/wss: URL of `path` resolved against `base` (default: the page's address). */
export function resourceURL(path: string, base?: string): URL;

export const CONNECTING: 'connecting';
export const OPEN: 'open';
export const RECONNECTING: 'reconnecting';
export const CLOSED: 'closed';
export const PERMANENT_CLOSE_CODES: readonly number[];
