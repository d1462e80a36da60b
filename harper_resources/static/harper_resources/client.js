/**
 * harper_resources client: one live resource path in the browser, kept open for you.
 *
 * An ES module with no build step, served by Django's staticfiles as
 * `{% static 'harper_resources/client.js' %}`; types in `client.d.ts` beside it.
 *
 *     import { connect } from '/static/harper_resources/client.js';
 *
 *     const dog = connect('/dog/341', {
 *       onRecord(id, value, frame) { render(value); },      // a `put`: the whole current record
 *       onDelete(id, frame) { showDeleted(id); },           // a `delete`
 *       onMessage(value, frame) { appendNote(value); },     // a published `message`, or what the resource sent
 *       onReset(frame) { clearEverything(); },              // resume too old: the full state follows
 *       onStateChange(state, info) { badge.textContent = info.text; },
 *     });
 *     dog.send({ dogId: '341', note: 'good with kids' });  // JSON; false when not connected
 *     dog.close();                                         // stop for good
 *
 * What it does for you:
 * - A relative path (`/dog/341`, `/dog/`) is resolved against the page: ws: on http:, wss: on https:.
 * - Reconnects after every close that can heal (a restart, a network loss, 1006, 1001, 1011/4011, 1013/4013,
 *   1008/4008, 1009/4009), after a jittered exponential delay (`minDelay` doubling up to `maxDelay`, each
 *   delay drawn between half and all of it), and at once when the browser comes back online or the page is
 *   shown again. It does not reconnect on refusals that cannot heal by retrying: 3000 (not logged in), 3003
 *   (not allowed), 4404 (no such resource), 4400 (bad subscription option), nor after a 1000 the server sent
 *   (the resource's stream ended).
 * - Resumes: it keeps the version of the last `put`/`delete` of each record and reconnects with
 *   `?since=<the newest of them>` (on a collection, `resumeOverlap`, 60 s, before it), so the server sends only what changed meanwhile (a record path: the record's
 *   current state if it changed; a collection path: one frame per changed or deleted record). A `put` or
 *   `delete` not newer than what this client already has for that record is skipped, so callbacks never see a
 *   state twice or go back in time. If the server's change log no longer reaches back that far, it sends
 *   `{"type": "reset"}` then the full state: `onReset` is the app's cue to drop what it shows.
 * - Connection state for a status badge: `connecting`, `open`, `reconnecting`, `closed`, with a sentence for
 *   people (`info.text`), never a bare close code.
 *
 * Frames a resource sends itself (the demo's status pulse `{"dogId": "341", "status": "connection active"}`,
 * values an async generator yields) reach `onMessage(value, value)`: `frame.type` is then not "message".
 * Binary frames reach `onMessage(arrayBuffer, arrayBuffer)`; text that is not JSON, `onMessage(text, text)`.
 * Messages are not resumed: a `message` published while the socket was down is not sent again.
 */

/** The connection states, in the order a connection usually goes through them. */
export const CONNECTING = 'connecting';
export const OPEN = 'open';
export const RECONNECTING = 'reconnecting';
export const CLOSED = 'closed';

/** Close codes after which a reconnect would be refused again: the client stops. */
export const PERMANENT_CLOSE_CODES = Object.freeze([3000, 3003, 4400, 4404, 4406]);

const CLOSE_TEXT = {
  1000: 'The server ended this stream.',
  1001: 'The server is going away (restarting?).',
  1006: 'The connection was lost.',
  1008: 'The server closed the connection: this page sent too many messages, too fast.',
  1009: 'The server closed the connection: a message from this page was too large.',
  1011: 'The server had an error.',
  1012: 'The server is restarting.',
  1013: 'The server closed the connection: this page could not keep up with the updates.',
  3000: 'Not logged in: log in to see this.',
  3003: 'You are not allowed to see this.',
  4400: 'The server refused the subscription options in the address.',
  4404: 'Not found: there is nothing live at this address.',
  4406: 'The server cannot send the format this page asked for.',
};

/**
 * A sentence for people about a close code. Servers that cannot send a 10xx code send 40xx instead
 * (4000 + code - 1000, e.g. 4011 for 1011 under daphne): both read the same.
 * @param {number} code
 * @returns {string}
 */
export function closeText(code) {
  const standard = code >= 4001 && code <= 4999 && code !== 4400 && code !== 4404 ? code - 3000 : code;
  return CLOSE_TEXT[standard] || `The connection closed (code ${code}).`;
}

/**
 * True if a close with `code` will be refused again on retry (see PERMANENT_CLOSE_CODES).
 * @param {number} code
 */
export function isPermanentClose(code) {
  return PERMANENT_CLOSE_CODES.includes(code);
}

const FRAME_TYPES = new Set(['put', 'delete', 'message', 'reset']);

function isProtocolFrame(data) {
  if (data === null || typeof data !== 'object' || Array.isArray(data) || !FRAME_TYPES.has(data.type)) return false;
  if (data.type === 'reset') return true;
  return 'id' in data && typeof data.version === 'number';
}

/**
 * The ws:/wss: URL of `path` on this page's server (or `path` itself if it is already absolute).
 * @param {string} path
 * @param {string} [base]
 */
export function resourceURL(path, base) {
  const url = new URL(path, base || (typeof location !== 'undefined' ? location.href : undefined));
  if (url.protocol === 'http:') url.protocol = 'ws:';
  else if (url.protocol === 'https:') url.protocol = 'wss:';
  url.hash = '';
  return url;
}

/** One resource path kept live: see the module's header. Create with `connect(path, options)`. */
export class ResourceConnection {
  /**
   * @param {string} path
   * @param {object} [options]
   */
  constructor(path, options = {}) {
    this.options = {
      minDelay: 500,
      maxDelay: 15000,
      resumeOverlap: 60000,
      protocols: undefined,
      WebSocket: globalThis.WebSocket,
      random: Math.random,
      ...options,
    };
    this.path = path;
    /** @type {string} */
    this.state = CONNECTING;
    /** The version of the newest `put`/`delete` per record id (JSON text of the id). */
    this.versions = new Map();
    this._socket = null;
    this._timer = null;
    this._attempt = 0;
    this._stopped = false;
    this._openedAt = 0;
    // Back online, or the page shown again: no reason to wait out the backoff.
    this._online = () => {
      if (this.state === RECONNECTING && !(typeof document !== 'undefined' && document.hidden)) this._reconnectNow();
    };
    this._listen('addEventListener');
    // Start after the caller holds the connection, so callbacks may already use it.
    queueMicrotask(() => {
      if (this._stopped) return;
      this._setState(CONNECTING, { text: 'Connecting…' });
      this._open();
    });
  }

  /** The newest version this client holds of any record, or null before the first `put`/`delete`. */
  get lastVersion() {
    let newest = null;
    for (const version of this.versions.values()) if (newest === null || version > newest) newest = version;
    return newest;
  }

  /**
   * The URL the next connection attempt uses: the path, plus `since` once a record was received. On a
   * collection (a path ending in `/`, or several records held) `since` reaches back `resumeOverlap` ms: a
   * record's versions follow commit order, but two records' do not (a transaction may take its version before
   * another commits and commit after it), and states this client already has are skipped anyway.
   */
  get url() {
    const url = resourceURL(this.path, this.options.base);
    let since = this.lastVersion;
    if (since !== null && (url.pathname.endsWith('/') || this.versions.size > 1)) since -= this.options.resumeOverlap;
    if (since !== null) url.searchParams.set('since', String(since));
    return url.toString();
  }

  /**
   * Send `value` as JSON text (an ArrayBuffer, typed array or Blob as a binary frame).
   * @returns {boolean} true if handed to the open socket; false if not connected (nothing is queued).
   */
  send(value) {
    const socket = this._socket;
    if (!socket || this.state !== OPEN || socket.readyState !== 1) return false;
    const blob = typeof Blob !== 'undefined' && value instanceof Blob;
    const binary = blob || value instanceof ArrayBuffer || ArrayBuffer.isView(value);
    socket.send(binary ? value : JSON.stringify(value));
    return true;
  }

  /** Close for good (1000) and stop reconnecting; the state becomes `closed`. Safe to call twice. */
  close(code = 1000, reason = '') {
    if (this._stopped) return;
    this._stopped = true;
    clearTimeout(this._timer);
    this._listen('removeEventListener');
    const socket = this._socket;
    this._socket = null;
    if (socket) {
      socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
      if (socket.readyState <= 1) socket.close(code, reason);
    }
    this._setState(CLOSED, { code, text: 'Closed.', permanent: true });
  }

  _listen(method) {
    if (typeof globalThis[method] === 'function') globalThis[method]('online', this._online);
    if (typeof document !== 'undefined') document[method]('visibilitychange', this._online);
  }

  _open() {
    const { WebSocket: Socket, protocols } = this.options;
    let socket;
    try {
      socket = protocols === undefined ? new Socket(this.url) : new Socket(this.url, protocols);
    } catch (error) {
      // A malformed URL or a refused scheme: retrying cannot help.
      this._stopped = true;
      this._listen('removeEventListener');
      this._setState(CLOSED, { code: 0, text: `Cannot connect: ${error.message}`, permanent: true });
      return;
    }
    socket.binaryType = 'arraybuffer';
    this._socket = socket;
    // Only the current socket may speak: a replaced one is ignored.
    socket.onopen = () => {
      if (this._socket !== socket) return;
      this._openedAt = Date.now();
      this._setState(OPEN, { text: 'Live.' });
    };
    socket.onmessage = (event) => {
      if (this._socket === socket) this._receive(event.data);
    };
    socket.onclose = (event) => {
      if (this._socket === socket) this._closed(event);
    };
  }

  _receive(data) {
    if (typeof data !== 'string') {
      this._call('onMessage', data, data);
      return;
    }
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      this._call('onMessage', data, data);
      return;
    }
    if (!isProtocolFrame(frame)) {
      this._call('onMessage', frame, frame);
      return;
    }
    if (frame.type === 'message') {
      this._call('onMessage', frame.value, frame);
      return;
    }
    if (frame.type === 'reset') {
      this.versions.clear();
      this._call('onReset', frame);
      return;
    }
    const key = JSON.stringify(frame.id);
    const known = this.versions.get(key);
    if (known !== undefined && frame.version <= known) return; // already shown, or older than what is shown
    this.versions.set(key, frame.version);
    if (frame.type === 'put') this._call('onRecord', frame.id, frame.value, frame);
    else this._call('onDelete', frame.id, frame);
  }

  _closed(event) {
    this._socket = null;
    if (this._stopped) return;
    const code = event.code;
    const text = closeText(code);
    // A 1000 from the server means the resource's stream ended on purpose.
    if (isPermanentClose(code) || code === 1000) {
      this._stopped = true;
      this._listen('removeEventListener');
      this._setState(CLOSED, { code, reason: event.reason, text, permanent: true });
      return;
    }
    // A connection that stayed up a while starts the backoff over; one that drops at once keeps growing it.
    if (this._openedAt && Date.now() - this._openedAt > 5000) this._attempt = 0;
    this._openedAt = 0;
    const { minDelay, maxDelay, random } = this.options;
    const ceiling = Math.min(maxDelay, minDelay * 2 ** this._attempt);
    const delay = Math.round(ceiling / 2 + (random() * ceiling) / 2);
    this._attempt += 1;
    this._timer = setTimeout(() => this._reconnectNow(), delay);
    this._setState(RECONNECTING, {
      code,
      reason: event.reason,
      text: `${text} Reconnecting in ${Math.max(1, Math.round(delay / 1000))} s…`,
      delay,
      attempt: this._attempt,
    });
  }

  _reconnectNow() {
    // Stopped, or an attempt already under way (back online while it connects): one socket at a time.
    if (this._stopped || this._socket) return;
    clearTimeout(this._timer);
    this._setState(RECONNECTING, { text: 'Reconnecting…', attempt: this._attempt });
    this._open();
  }

  _setState(state, info) {
    this.state = state;
    this._call('onStateChange', state, { state, ...info });
  }

  _call(name, ...args) {
    const callback = this.options[name];
    if (typeof callback !== 'function') return;
    try {
      callback.apply(this, args);
    } catch (error) {
      // One failing callback must not stop the stream: report it as an uncaught error would be.
      setTimeout(() => {
        throw error;
      });
    }
  }
}

/**
 * Open `path` (a resource path such as `/dog/341` or `/dog/`) and keep it open: see the module's header.
 * @param {string} path
 * @param {object} [options] callbacks and tuning: see client.d.ts
 * @returns {ResourceConnection}
 */
export function connect(path, options) {
  return new ResourceConnection(path, options);
}
