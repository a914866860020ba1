import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { addressList } from './services/client-address.js';
import { parseAllowEntry } from './services/http-call.js';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { z } from 'zod';
import { LOG_LEVELS, type LogLevel } from './log.js';

/** Everything an operator can set. Precedence: defaults < config file (JSON) < command-line flags. */
export interface Config {
  /** Directory holding the store (SQLite), the generated TLS certificate, uploads. */
  dataDir: string;
  /**
   * Where accounts and mail live: '' = the embedded SQLite engine in dataDir (one server
   * process); `postgres://user:password@host:port/database` = PostgreSQL, which any number
   * of nodes may share (a cluster).
   */
  store: string;
  /** This process as a node of a cluster (see README "Running a cluster"). */
  cluster: {
    /**
     * Unique per node: a number of up to 9 digits, which begins every urlID the node hands
     * out (`<node>-<20 alphanumerics>`, the shape clients expect); '' = a random one at each start.
     */
    nodeId: string;
    /**
     * The HTTP URL other nodes reach this node's HTTP listener at, to forward requests for
     * its sessions; '' = http://<host>:<HTTP port> (127.0.0.1 when listening on every address).
     */
    internalUrl: string;
    /** How often the node tells the store it is alive, and when the others count it dead. */
    heartbeatSeconds: number;
    nodeTimeoutSeconds: number;
  };
  /** Address every listener binds to. */
  host: string;
  /**
   * On SIGTERM/SIGINT the server stops accepting, ends every session and closes the store
   * within this many seconds; connections still open then are dropped and the process exits.
   */
  shutdownSeconds: number;
  /** The structured log (JSON lines on standard output). */
  log: {
    /** trace, debug, info (the default: every event README "Logs" lists), warn, error, fatal or silent. */
    level: LogLevel;
  };
  /** GET /metrics on the HTTP listener (Prometheus text format). */
  metrics: {
    enabled: boolean;
    /** Client addresses allowed to read it (addresses or CIDR prefixes); others get 404. */
    allow: string[];
  };
  /** Name of the domain created on first start; logins without a domain part use it. */
  defaultDomain: string;
  /**
   * The URL users reach the HTTP listener at (password-reset links); '' = http://<defaultDomain>:<HTTP port>.
   */
  publicUrl: string;
  ports: {
    ximss: number;
    /** Implicit-TLS XIMSS listener; 0 = off. */
    ximssTls: number;
    http: number;
    /** Implicit-TLS HTTP (https) listener; 0 = off. */
    https: number;
    smtp: number;
    xmpp: number;
    /** Direct-TLS XMPP listener (XEP-0368, clients' "xmpps-client"); 0 = off. */
    xmppTls: number;
    /** XMPP server-to-server listener (federation, RFC 6120 "xmpp-server"); 0 = federation off. */
    xmppS2s: number;
    /** SIP over UDP and TCP, one port number for both (RFC 3261 18); 0 = SIP off. */
    sip: number;
    /** SIP over TLS (5061 usually); 0 = off. */
    sipTls: number;
  };
  tls: {
    /** PEM files; '' = a self-signed certificate, generated and kept in dataDir/tls. */
    certFile: string;
    keyFile: string;
  };
  /** XMPP client streams (TCP with STARTTLS, direct TLS, WebSocket on the HTTP listener's /xmpp-websocket). */
  xmpp: {
    /**
     * Refuse authentication on an unencrypted stream altogether (STARTTLS first), as Prosody
     * does by default (on). Off: PLAIN is offered only once the stream is encrypted, SCRAM
     * (which never shows the password) also before.
     */
    requireTls: boolean;
    /** Largest stanza after authentication, in bytes (Prosody's default); a larger one ends the stream (policy-violation). */
    maxStanzaBytes: number;
    /** Largest stanza (and stream header) before authentication, in bytes. */
    preAuthStanzaBytes: number;
    /**
     * Bytes per second a client stream may send, on average; beyond it reading pauses
     * (Prosody's mod_limits). A burst of readBurstSeconds' worth passes at once.
     */
    readBytesPerSecond: number;
    readBurstSeconds: number;
    /** Stream management (XEP-0198): how long a lost stream's session waits to be resumed. */
    resumeSeconds: number;
    /** A stream silent this long is pinged (XEP-0199, or an ack request); silent as long again, it is closed. */
    pingSeconds: number;
    /** XMPP over WebSocket (RFC 7395) on the HTTP listeners' path /xmpp-websocket. */
    webSocket: boolean;
    /** Federation with other XMPP servers (ports.xmppS2s). */
    s2s: {
      /** Refuse server streams (both ways) that are not encrypted with STARTTLS. */
      requireTls: boolean;
      /**
       * PEM file of the CAs trusted for other servers' certificates ('' = the system's); a
       * certificate valid for the peer's domain allows SASL EXTERNAL, else Server Dialback.
       */
      caFile: string;
      /** A connection to another server this long without stanzas is closed. */
      idleSeconds: number;
      /** Connecting and authenticating to another server must end within this; else its queued stanzas bounce. */
      connectSeconds: number;
      /** Stanzas waiting for one remote domain's connection; more bounce (resource-constraint). */
      queueStanzas: number;
      /** Server streams open at once from one address. */
      connectionsPerAddress: number;
    };
  };
  /** SIP (ports.sip, ports.sipTls, and WebSocket on the HTTP listeners' path /sip, RFC 7118). */
  sip: {
    /** The host name or address Via and Contact name when clients reach the server at another address (NAT); '' = the local address. */
    publicHost: string;
    /** SIP over WebSocket on the HTTP listeners' path /sip. */
    webSocket: boolean;
    /** SIP connections (TCP, TLS, WebSocket) open at once, server-wide, and from one address. */
    connections: number;
    connectionsPerAddress: number;
    /** A connection that receives nothing this long (not even a keep-alive) is closed. */
    idleSeconds: number;
    /** Bytes waiting to be written to one connection; past them its peer is dropped. */
    outputBytes: number;
    /** The UDP ports the media gateway's RTP and RTCP use (see `media`). */
    mediaPorts: { min: number; max: number };
    /**
     * The Digest algorithms challenges offer, one challenge each, in this order. MD5 alone by
     * default (as Kamailio and Asterisk do): deployed phones give up on a response that holds
     * a challenge they do not know (baresip 1.0's libre answers none when one says SHA-256);
     * ["SHA-256", "MD5"] is RFC 8760's order for fleets that all know SHA-256.
     */
    digestAlgorithms: ('MD5' | 'SHA-256')[];
    /**
     * A SIP trunk (`sip:host[:port][;transport=tcp]`) for calls to phone numbers and other
     * domains; '' = other domains by DNS (RFC 3263), phone numbers nowhere.
     */
    trunk: string;
    /**
     * The Digest credentials the trunk knows the server by: a 401 or 407 from the trunk to an
     * INVITE is answered once with them (and only the trunk's); '' = the trunk knows the
     * server by its address.
     */
    trunkUser: string;
    trunkPassword: string;
    /**
     * RFC 4028 session timers: the Session-Expires (seconds) the server's INVITEs ask for and
     * the longest it grants a phone; a call whose refresher lets it pass without a refresh
     * ends with BYE.
     */
    sessionExpires: number;
    /**
     * The shortest session interval taken (Min-SE): a shorter Session-Expires gets 422. RFC
     * 4028 says 90 at least; a smaller value is for tests.
     */
    minSE: number;
  };
  /** Mail received from other servers (SMTP without AUTH). */
  inbound: {
    /**
     * Check SPF, DKIM and DMARC and record the results in an Authentication-Results field
     * (README "Mail authentication"); DNS failures never refuse mail.
     */
    authenticationChecks: boolean;
  };
  /** Calendars. */
  calendar: {
    /**
     * Whether calendarOpen may fetch a `url` whose host is a loopback, private, link-local or
     * other non-public address (off: a user cannot make the server read its own network).
     */
    remotePrivateAddresses: boolean;
  };
  /**
   * XIMSS retrieveXML and httpCall: HTTP requests users make through the server (README
   * "HTTP requests for clients"; src/services/http-call.ts).
   */
  fetch: {
    /** Whether each operation is available at all. */
    retrieveXML: boolean;
    httpCall: boolean;
    /**
     * Whether hosts with loopback, private, link-local or other non-public addresses may be
     * reached (the server's own ports still need an entry of `allow` with the port).
     */
    allowPrivate: boolean;
    /**
     * Destinations allowed besides public addresses: an address, a CIDR prefix, a host name or
     * `*.domain`, each with an optional `:port` (IPv6 in brackets then: `[::1]:8080`). An entry
     * with a port allows that port only; the server's own listening ports on this machine are
     * reached only through an entry that names the port.
     */
    allow: string[];
    /** The largest answer, in bytes; the longest exchange, in seconds (a request's `timeout` may only shorten it). */
    maxBytes: number;
    timeoutSeconds: number;
    /** Redirects followed at most, each checked like the first URL. */
    redirects: number;
    /** Requests one account may have running at once on one node, and start in a minute. */
    concurrentPerAccount: number;
    requestsPerMinute: number;
  };
  /** Instant messaging and presence (XIMSS and XMPP clients; src/services/im/). */
  im: {
    /** Contacts in one roster, groups one contact may be in, addresses one account may block. */
    rosterItems: number;
    rosterGroups: number;
    blockedItems: number;
    /** Messages kept for an account while none of its clients is online, and for how many days. */
    offlineMessages: number;
    offlineDays: number;
    /** IM clients (XMPP resources, bound XIMSS sessions) one account may have connected at once. */
    resourcesPerAccount: number;
    /** Days the message archive (XEP-0313) keeps a message; 0 keeps no archive. */
    archiveDays: number;
    /** Group chat (XEP-0045): the service of each local domain is `<mucSubdomain>.<domain>`. */
    mucSubdomain: string;
    /** Rooms one group chat service may have, occupants one room may have. */
    mucRoomsPerService: number;
    mucOccupantsPerRoom: number;
    /** Messages of discussion history a room keeps (and replays to newcomers) at most. */
    mucHistory: number;
  };
  /** Calls (the call engine, src/services/calls/). */
  calls: {
    /** How long a call may ring unanswered, seconds. */
    ringSeconds: number;
    /** Calls one account may place at once from one node, and calls one node may hold. */
    callsPerAccount: number;
    callsPerNode: number;
    /**
     * Addresses whose calls go to an account's applications (its Rayo clients) rather than to
     * anyone else: `address` a pattern (`*` matches any run, case-insensitive) of what is called —
     * `tel:+1800*`, `sip:support@example.com`, `*@ivr.example.com` —, `account` whose clients take them;
     * with `program`, that real-time application (apps.directory) takes them for the account instead.
     */
    applicationRoutes: { address: string; account: string; program?: string }[];
    /** Calls one account may have under Rayo control at once on one node (offered, answered or dialed). */
    rayoCallsPerAccount: number;
  };
  /**
   * The media gateway (src/media/): the calls whose media it anchors, on ports from
   * sip.mediaPorts (README "Calls and SIP").
   */
  media: {
    /**
     * Which calls' media flows through the server: `auto`, those that need it — between a WebRTC
     * endpoint (a browser) and a plain RTP phone, which cannot talk directly, or with a phone
     * behind NAT; `always`, every call whose media is known (addresses kept private); `never`.
     */
    relay: 'auto' | 'always' | 'never';
    /**
     * The address written into the SDP and ICE candidates the server gives; '' = sip.publicHost
     * when it is an IP address, else `host` unless it is a wildcard, else this machine's first
     * external IPv4 address.
     */
    publicAddress: string;
    /** The local address media sockets bind to, when it differs (a 1:1 NAT); '' = publicAddress. */
    bindAddress: string;
    /** Calls anchored at once on one node (each takes two port pairs), and for one account (as caller or callee) on one node. */
    sessions: number;
    sessionsPerAccount: number;
    /** An anchored call with no RTP either way this long (and neither side on hold) is hung up; 0 = never. */
    idleSeconds: number;
    /**
     * Where prompts (Rayo output documents given by URL) may be fetched from: `public`, hosts
     * whose addresses are all public (no loopback, private or link-local address: a prompt URL
     * must not reach the server's own network); `any`.
     */
    promptFetch: 'public' | 'any';
  };
  /** Real-time applications (src/services/apps/: XIMSS taskStart, calls to `#<program>`). */
  apps: {
    /** A directory of application modules (`<program>.js`) besides the built-in ones; '' = none. */
    directory: string;
    /** Tasks one account may run at once on one node, and tasks one node may run. */
    tasksPerAccount: number;
    tasksPerNode: number;
    /** How long a meeting lives after it was created or last activated, days. */
    meetingDays: number;
    /** Meetings one account may have. */
    meetingsPerAccount: number;
  };
  /** Skins (skinList, skinFileList, skinFileRead, readConfigFile): README "Skins". */
  /** cliExecute (src/services/cli/): who administers the server, and the size of a command. */
  cli: {
    /** Accounts (`name@domain`) that are server administrators: every CLI command (a domain's postmaster administers its domain). */
    administrators: string[];
    /** The longest command line, in UTF-8 bytes. */
    maxCommandBytes: number;
    /** The deepest nesting of arrays and dictionaries in a command line. */
    maxDepth: number;
  };
  skins: {
    /** Server-wide skins: the unnamed skin's files, and a subdirectory per named skin; '' = <dataDir>/skins. */
    directory: string;
    /** Domain skins: `<domainDirectory>/<domain>/`, laid out the same way; '' = <dataDir>/domain-skins. */
    domainDirectory: string;
    /** The largest skin or configuration file served, bytes. */
    maxFileBytes: number;
    /** Entries read from one skin directory for a listing (more: the listing is refused). */
    maxFiles: number;
  };
  /** Account balances (src/services/billing.ts: the XIMSS `balance` operation, `ximssd balance`). */
  /**
   * The key that seals secrets the server uses again in clear (src/services/secret-box.ts):
   * 64 hex digits in a file; '' = <dataDir>/secret.key, made on first start. Every node of a
   * cluster needs the same file.
   */
  /**
   * The accounts' registrations with other SIP servers (rsipUpdate; README "Remote SIP
   * registrations"): one node registers each record, under a lease it renews every scan.
   */
  remoteSip: {
    /** Records one account may have. */
    recordsPerAccount: number;
    /** The registration interval a record may ask for (seconds), and the one it gets when it names none. */
    minExpires: number;
    maxExpires: number;
    defaultExpires: number;
    /** How often a node renews its leases and looks for records to take; a lease lasts leaseSeconds. */
    scanSeconds: number;
    leaseSeconds: number;
    /** The back-off after a failed attempt: retryMinSeconds, doubling up to retryMaxSeconds. */
    retryMinSeconds: number;
    retryMaxSeconds: number;
    /** Records one node registers at most. */
    registrationsPerNode: number;
    /** Registrars at loopback, private or other non-public addresses may be reached (off: refused, as retrieveXML refuses them). */
    allowPrivate: boolean;
  };
  secrets: { keyFile: string };
  /** S/MIME (src/services/smime/): keys the server keeps for its accounts, signing and encryption. */
  smime: {
    /** The longest SMIMEUnlock (and SMIMESet) may keep a key unlocked; a longer or absent duration is cut to this. */
    maxUnlockSeconds: number;
    /** The largest message (or inner message) that messageSubmit/messageAppend signs or encrypts. */
    maxMessageBytes: number;
    /** The largest PKCS#12 (PFX) file SMIMESet imports. */
    maxPfxBytes: number;
    /** RSA modulus of the keys SMIMESet mode=new makes. */
    keyBits: number;
    /** Validity of the certificates SMIMESet mode=new (and update) issues. */
    certificateDays: number;
    /** Certificates collected from signed mail that one account keeps at most (one per address). */
    peerCertificates: number;
    /** Wrong S/MIME passwords an account may give in 10 minutes (counted in the store: all nodes together) before unlocking is refused for a while. */
    maxUnlockFailures: number;
    /** Heavy S/MIME operations (scrypt, 32 MiB each; key generation; PKCS#12 import and export) running at once on a node; more wait, and past 8 times this many are refused as busy. */
    passwordWorkers: number;
    /** CertAndKey.pfx exports one session may make in an hour; more are refused (HTTP 429). */
    pfxExportsPerHour: number;
    /** Messages one messageCopy/messageMove with encrypt="yes" or decrypt="yes" converts at most; more are refused. */
    maxConvertMessages: number;
  };
  /**
   * Remote POP and IMAP accounts (src/services/remote-mail/: the XIMSS rpop and rimap operations): records an
   * account keeps of mailboxes on other servers, polled by the server and delivered here
   * through the account's Mail Rules.
   */
  remoteMail: {
    /** Off: nothing is polled (the records can still be listed and edited). */
    poll: boolean;
    /** Records (RPOP and RIMAP together) one account may have. */
    recordsPerAccount: number;
    /** The shortest and longest polling interval a record may ask for, and the one it gets when it names none, seconds. */
    minIntervalSeconds: number;
    maxIntervalSeconds: number;
    defaultIntervalSeconds: number;
    /** A remote message larger than this is left where it is (and named in the record's error), bytes. */
    maxMessageBytes: number;
    /** Messages one poll fetches at most (the rest come with the next poll, soon after). */
    messagesPerPoll: number;
    /** A remote server silent this long (connecting, or between replies) fails the poll, seconds. */
    timeoutSeconds: number;
    /** Polls one node runs at once. */
    concurrency: number;
    /** How long a node holds a record it polls before another may take it (renewed while the poll runs), seconds. */
    leaseSeconds: number;
    /** A failing record is tried again after its interval, doubled per failure up to this, seconds. */
    maxBackoffSeconds: number;
    /** Remote servers at private or loopback addresses may be polled (off: refused, as retrieveXML refuses them). */
    allowPrivate: boolean;
    /** PEM file of the CAs that remote servers' certificates are checked against; '' = the system's. */
    caFile: string;
  };
  /** Login security (src/services/two-factor.ts, app-passwords.ts; README "Two-factor login and application passwords"). */
  auth: {
    /** The issuer authenticator apps show for the TOTP secret; '' = the server's default domain. */
    totpIssuer: string;
    /** Recovery codes made when two-factor authentication is turned on (each usable once). */
    recoveryCodes: number;
    /** Application passwords an account may have. */
    appPasswordsPerAccount: number;
    /** The longest application password name (label), in characters. */
    appPasswordNameLength: number;
    /**
     * Wrong second factors (codes, recovery codes) an account may get in
     * `secondFactorWindowSeconds`, from all addresses and nodes together; past it the account's
     * second factor is refused (not only slowed down) until the window passes.
     */
    secondFactorFailures: number;
    secondFactorWindowSeconds: number;
    /** Sessions of an account waiting for their second factor at once (apart from limits.sessionsPerAccount). */
    pendingSessionsPerAccount: number;
  };
  billing: {
    /** The balance an operation uses when it names none: a currency code of 3 letters (USD). */
    currency: string;
    /** The largest amount one credit or debit may move, in minor units (cents). */
    maxAmount: number;
    /** The highest a balance may reach, in minor units; credits beyond it are refused. */
    maxBalance: number;
    /** Entries one `history` request returns at most. */
    historyLimit: number;
  };
  /** Delivery of mail for other domains (the outbound queue). */
  outbound: {
    /** `host:port` of a relay (smart host) that takes all mail for other domains; '' = each domain's MX. */
    relay: string;
    /** AUTH credentials for the relay ('' = no AUTH). */
    relayUser: string;
    relayPassword: string;
    /** STARTTLS with the relay and MX hosts: 'opportunistic' (when offered), 'required', or 'off' (STARTTLS_MODES). */
    starttls: string;
    /** The port MX hosts are contacted on. */
    mxPort: number;
    /** Retry back-off: the first interval, doubling up to the maximum, seconds. */
    firstRetrySeconds: number;
    maxRetrySeconds: number;
    /** How long a message may stay queued before it is returned as undeliverable, seconds. */
    lifetimeSeconds: number;
    /** Messages being delivered at once. */
    concurrency: number;
    /**
     * How long a node's claim on a queued message lasts; renewed while the attempt runs. A
     * node that dies leaves its messages to the others this long after its last renewal.
     */
    leaseSeconds: number;
  };
  limits: {
    /** Largest XIMSS message (TCP document or HTTP body) of a logged-in session, in bytes. */
    maxRequestBytes: number;
    /** Largest XIMSS message before login (TCP document, /XIMSSLogin/ body), in bytes. */
    preLoginRequestBytes: number;
    /** Requests a session may have received but not answered (and per HTTP batch); beyond it the binding stops reading. */
    maxPendingRequests: number;
    /** The same before login: pipelined requests, and requests in a /XIMSSLogin/ batch. */
    preLoginRequests: number;
    /** Bytes of answers a connection (or a /XIMSSLogin/ batch) may be sent before it logs in. */
    preLoginOutputBytes: number;
    /**
     * HTTP: bytes of answers one sync batch may collect (later requests of the batch are then
     * refused), and of answers to async batches waiting for polls (requests then wait).
     */
    maxAnswerBytes: number;
    /** XML guard, enforced while a message is parsed: element nesting depth. */
    xmlDepth: number;
    /** Elements in one message after login, and before login. */
    xmlElements: number;
    preLoginXmlElements: number;
    /** Attributes on one element. */
    xmlAttributes: number;
    /** Characters in one attribute value, and in one run of text. */
    xmlAttributeChars: number;
    xmlTextChars: number;
    /** Connections from one client address that are not logged in (XIMSS TCP, HTTP, SMTP each count). */
    connectionsPerAddress: number;
    /** Connections not logged in, server-wide. */
    preLoginConnections: number;
    /**
     * Requests refused before login (malformed, oversized or overdeep XML) that one address
     * may send in a minute; past them its new connections are refused for abuseBlockSeconds
     * (0 turns this off).
     */
    abusePerAddress: number;
    abuseBlockSeconds: number;
    /** A new connection must send its first complete request within this many seconds. */
    firstRequestSeconds: number;
    /** ...and log in within this many seconds. */
    loginSeconds: number;
    /** HTTP: the request head must arrive within this many seconds; the whole request within requestSeconds. */
    httpHeadersSeconds: number;
    httpRequestSeconds: number;
    /** HTTP: an idle keep-alive connection is closed after this many seconds. */
    httpKeepAliveSeconds: number;
    /** Default session idle time-out, seconds. */
    idleTimeoutSeconds: number;
    /** Sessions one account may have open at once. */
    sessionsPerAccount: number;
    /** getSessionData/setSessionData: the bytes and the keys a session's data may hold. */
    sessionDataBytes: number;
    sessionDataKeys: number;
    /** Open folders, per session and per account (all its sessions). */
    foldersPerSession: number;
    foldersPerAccount: number;
    /**
     * A failed login is answered this many milliseconds after its verification started; a
     * refused one, a sign-up and a password-recovery request are delayed as long.
     */
    loginFailureDelayMs: number;
    /**
     * Login attempts, every protocol together (XIMSS, /XIMSSLogin/, SMTP AUTH, passwordModify).
     * An attempt counts against its client address (IPv6: its /64) from the moment it starts,
     * so parallel attempts cannot race the limit; a right password gives its place back. An
     * address with loginFailuresPerAddress failures (and attempts under way) is refused,
     * blocked for the window. An account (all its aliases together) past loginFailuresPerAccount
     * failures is slowed down, never refused: attempts from addresses its owner has not logged
     * in from recently wait for the account's next slot, slots accountSlowdownMs apart (one
     * whose slot is beyond loginSeconds is refused at once); the owner's addresses go straight
     * through. Sign-ups and password-recovery requests per address are limited to
     * loginFailuresPerAddress in the window too, every request counting.
     */
    loginFailuresPerAddress: number;
    loginFailuresPerAccount: number;
    accountSlowdownMs: number;
    /** The window the failures are counted in, seconds. */
    loginFailureWindowSeconds: number;
    /**
     * SMTP: error replies on one connection (refused recipients, failed AUTH, bad commands)
     * before the server says 421 4.7.0 Too many errors and closes it (Postfix's smtpd_hard_error_limit).
     */
    smtpErrorsPerConnection: number;
    /** HTTP long-poll `maxWait` ceiling, seconds. */
    maxPollSeconds: number;
    /** Largest message a client may append or upload, in bytes. */
    maxMessageBytes: number;
    /** Bytes of uploaded files (spooled on disk): per session, per account, server-wide. */
    uploadBytesPerSession: number;
    uploadBytesPerAccount: number;
    uploadBytesTotal: number;
    /** Content scans (folderSearch, filtered folderOpen): seconds of work one request may take. */
    searchSeconds: number;
    filterSeconds: number;
    /**
     * spellerCheck: UTF-8 bytes and words of one text; distinct misspelled words given
     * guesses, and the seconds their search may take per text; texts waiting server-wide.
     */
    spellerTextBytes: number;
    spellerWords: number;
    spellerGuessWords: number;
    spellerGuessSeconds: number;
    spellerPending: number;
  };
}

/** The host name as a usable domain name (host names such as `Build_Box` are not). */
function hostDomainName(): string {
  const name = hostname()
    .toLowerCase()
    .replace(/[^a-z0-9.-]/g, '-')
    .replace(/^[-.]+|[-.]+$/g, '')
    .replace(/\.{2,}/g, '.');
  return name || 'localhost';
}

export function defaultConfig(): Config {
  return {
    dataDir: resolve('data'),
    store: '',
    cluster: { nodeId: '', internalUrl: '', heartbeatSeconds: 5, nodeTimeoutSeconds: 20 },
    host: '0.0.0.0',
    shutdownSeconds: 5,
    log: { level: 'info' },
    metrics: { enabled: true, allow: ['127.0.0.0/8', '::1'] },
    defaultDomain: hostDomainName(),
    publicUrl: '',
    ports: { ximss: 11024, ximssTls: 0, http: 8100, https: 0, smtp: 2525, xmpp: 5222, xmppTls: 0, xmppS2s: 5269, sip: 5060, sipTls: 0 },
    tls: { certFile: '', keyFile: '' },
    xmpp: {
      requireTls: true,
      maxStanzaBytes: 256 * 1024,
      preAuthStanzaBytes: 10 * 1024,
      readBytesPerSecond: 64 * 1024,
      readBurstSeconds: 2,
      resumeSeconds: 300,
      pingSeconds: 300,
      webSocket: true,
      s2s: { requireTls: false, caFile: '', idleSeconds: 600, connectSeconds: 30, queueStanzas: 500, connectionsPerAddress: 20 },
    },
    sip: { publicHost: '', webSocket: true, connections: 10_000, connectionsPerAddress: 64, idleSeconds: 300, outputBytes: 1024 * 1024, mediaPorts: { min: 20000, max: 29999 }, digestAlgorithms: ['MD5'], trunk: '', trunkUser: '', trunkPassword: '', sessionExpires: 1800, minSE: 90 },
    inbound: { authenticationChecks: true },
    calendar: { remotePrivateAddresses: false },
    fetch: { retrieveXML: true, httpCall: false, allowPrivate: false, allow: [], maxBytes: 1024 * 1024, timeoutSeconds: 30, redirects: 5, concurrentPerAccount: 2, requestsPerMinute: 60 },
    im: { rosterItems: 2000, rosterGroups: 200, blockedItems: 1000, offlineMessages: 1000, offlineDays: 30, resourcesPerAccount: 32, archiveDays: 365, mucSubdomain: 'conference', mucRoomsPerService: 1000, mucOccupantsPerRoom: 200, mucHistory: 50 },
    calls: { ringSeconds: 120, callsPerAccount: 20, callsPerNode: 10_000, applicationRoutes: [], rayoCallsPerAccount: 100 },
    media: { relay: 'auto', publicAddress: '', bindAddress: '', sessions: 1000, sessionsPerAccount: 20, idleSeconds: 120, promptFetch: 'public' },
    apps: { directory: '', tasksPerAccount: 20, tasksPerNode: 1000, meetingDays: 30, meetingsPerAccount: 1000 },
    cli: { administrators: [], maxCommandBytes: 64 * 1024, maxDepth: 16 },
    skins: { directory: '', domainDirectory: '', maxFileBytes: 1024 * 1024, maxFiles: 2000 },
    remoteSip: { recordsPerAccount: 5, minExpires: 60, maxExpires: 86_400, defaultExpires: 3600, scanSeconds: 15, leaseSeconds: 60, retryMinSeconds: 30, retryMaxSeconds: 1800, registrationsPerNode: 10_000, allowPrivate: false },
    secrets: { keyFile: '' },
    smime: { maxUnlockSeconds: 8 * 3600, maxMessageBytes: 16 * 1024 * 1024, maxPfxBytes: 256 * 1024, keyBits: 2048, certificateDays: 730, peerCertificates: 2000, maxUnlockFailures: 10, passwordWorkers: 2, pfxExportsPerHour: 10, maxConvertMessages: 500 },
    remoteMail: { poll: true, recordsPerAccount: 10, minIntervalSeconds: 300, maxIntervalSeconds: 7 * 86_400, defaultIntervalSeconds: 900, maxMessageBytes: 50 * 1024 * 1024, messagesPerPoll: 200, timeoutSeconds: 60, concurrency: 4, leaseSeconds: 300, maxBackoffSeconds: 6 * 3600, allowPrivate: false, caFile: '' },
    auth: {
      totpIssuer: '',
      recoveryCodes: 10,
      appPasswordsPerAccount: 10,
      appPasswordNameLength: 64,
      secondFactorFailures: 10,
      secondFactorWindowSeconds: 900,
      pendingSessionsPerAccount: 5,
    },
    billing: { currency: 'USD', maxAmount: 1_000_000_000, maxBalance: 1_000_000_000_000, historyLimit: 500 },
    outbound: {
      relay: '',
      relayUser: '',
      relayPassword: '',
      starttls: 'opportunistic',
      mxPort: 25,
      firstRetrySeconds: 60,
      maxRetrySeconds: 3600,
      lifetimeSeconds: 5 * 24 * 3600,
      concurrency: 8,
      leaseSeconds: 120,
    },
    limits: {
      maxRequestBytes: 10 * 1024 * 1024,
      preLoginRequestBytes: 64 * 1024,
      maxPendingRequests: 10_000,
      preLoginRequests: 16,
      preLoginOutputBytes: 1024 * 1024,
      maxAnswerBytes: 64 * 1024 * 1024,
      xmlDepth: 64,
      xmlElements: 100_000,
      preLoginXmlElements: 256,
      xmlAttributes: 64,
      xmlAttributeChars: 1024 * 1024,
      xmlTextChars: 10 * 1024 * 1024,
      connectionsPerAddress: 64,
      preLoginConnections: 4096,
      abusePerAddress: 20,
      abuseBlockSeconds: 60,
      firstRequestSeconds: 30,
      loginSeconds: 120,
      httpHeadersSeconds: 20,
      httpRequestSeconds: 300,
      httpKeepAliveSeconds: 30,
      idleTimeoutSeconds: 600,
      sessionsPerAccount: 100,
      sessionDataBytes: 1024 * 1024,
      sessionDataKeys: 1000,
      foldersPerSession: 100,
      foldersPerAccount: 200,
      loginFailureDelayMs: 1000,
      loginFailuresPerAddress: 20,
      loginFailuresPerAccount: 10,
      accountSlowdownMs: 5000,
      loginFailureWindowSeconds: 300,
      smtpErrorsPerConnection: 20,
      maxPollSeconds: 120,
      maxMessageBytes: 50 * 1024 * 1024,
      uploadBytesPerSession: 100 * 1024 * 1024,
      uploadBytesPerAccount: 200 * 1024 * 1024,
      uploadBytesTotal: 2 * 1024 * 1024 * 1024,
      searchSeconds: 5,
      filterSeconds: 30,
      spellerTextBytes: 512 * 1024,
      spellerWords: 50_000,
      spellerGuessWords: 200,
      spellerGuessSeconds: 2,
      spellerPending: 16,
    },
  };
}

export type ConfigOverrides = {
  [K in keyof Config]?: Config[K] extends object ? Partial<Config[K]> : Config[K];
};

// ---------------------------------------------------------------------------------------------
// The schema: every key, its type and its range. Unknown keys are refused at every depth.

export const STARTTLS_MODES = ['opportunistic', 'required', 'off'] as const;

/** The longest delay a timer can take (2^31-1 ms, about 24.8 days): Node fires longer ones at once. */
const MAX_TIMER_SECONDS = 2_147_483;

const number = (ok: (n: number) => boolean, rule: string) => z.number().refine(ok, rule);
const port = (rule: string) => number((n) => Number.isInteger(n) && n >= 0 && n <= 65535, `must be a port number, 0 to 65535 (${rule})`);
const whole = (min: number) => number((n) => Number.isSafeInteger(n) && n >= min, `must be a whole number, at least ${min}`);
const seconds = () =>
  number((n) => n > 0 && n <= MAX_TIMER_SECONDS, `must be a number of seconds greater than 0 and at most ${MAX_TIMER_SECONDS}`);
const seconds0 = (meaning: string) =>
  number((n) => n >= 0 && n <= MAX_TIMER_SECONDS, `must be a number of seconds from 0 (${meaning}) to ${MAX_TIMER_SECONDS}`);
const millis = () => number((n) => Number.isInteger(n) && n >= 0 && n <= MAX_TIMER_SECONDS * 1000, 'must be a whole number of milliseconds, 0 or more');
const text = (ok: (s: string) => boolean, rule: string) => z.string().refine(ok, rule);

const DOMAIN_NAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;

function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.hostname !== '';
  } catch {
    return false;
  }
}

function isPostgresUrl(value: string): boolean {
  try {
    return /^postgres(ql)?:$/i.test(new URL(value).protocol);
  } catch {
    return false;
  }
}

/** `host`, `host:port` or `[ipv6]:port`, as the outbound queue reads `outbound.relay`. */
function isHostPort(value: string): boolean {
  const m = /^(?:\[([^\]]+)\]|([^:\s[\]]+))(?::(\d{1,5}))?$/.exec(value);
  if (!m) return false;
  if (m[1] !== undefined && isIP(m[1]) !== 6) return false;
  if (m[2] !== undefined && isIP(m[2]) === 0 && !DOMAIN_NAME.test(m[2])) return false;
  return m[3] === undefined || (Number(m[3]) > 0 && Number(m[3]) <= 65535);
}

/** An entry of fetch.allow (src/services/http-call.ts). */
function isAllowEntry(value: string): boolean {
  try {
    parseAllowEntry(value);
    return true;
  } catch {
    return false;
  }
}

/** An address (`10.1.2.3`, `::1`) or a CIDR prefix (`10.0.0.0/8`, `fd00::/8`), as node:net's BlockList takes them. */
export function isAddressOrPrefix(value: string): boolean {
  try {
    addressList([value]);
    return true;
  } catch {
    return false;
  }
}

const configSchema = z.strictObject({
  dataDir: text((s) => s !== '', 'must be a directory name, not empty'),
  store: text((s) => s === '' || isPostgresUrl(s), 'must be empty (SQLite in the data directory) or a postgres:// URL'),
  cluster: z.strictObject({
    nodeId: text((s) => s === '' || /^[1-9][0-9]{0,8}$/.test(s), 'must be empty (a random id at each start) or a number from 1 to 999999999, in quotes'),
    internalUrl: text((s) => s === '' || isHttpUrl(s), 'must be empty or an http:// URL'),
    heartbeatSeconds: seconds(),
    nodeTimeoutSeconds: seconds(),
  }),
  host: text((s) => isIP(s) !== 0 || DOMAIN_NAME.test(s), 'must be an IP address (0.0.0.0 or :: for every address) or a host name'),
  shutdownSeconds: seconds(),
  log: z.strictObject({ level: z.enum(LOG_LEVELS) }),
  metrics: z.strictObject({
    enabled: z.boolean(),
    allow: z.array(text(isAddressOrPrefix, 'must be an IP address or a CIDR prefix (such as 10.0.0.0/8 or fd00::/8)')),
  }),
  defaultDomain: text((s) => DOMAIN_NAME.test(s), 'must be a domain name'),
  publicUrl: text((s) => s === '' || isHttpUrl(s), 'must be empty or an http:// or https:// URL'),
  ports: z.strictObject({
    ximss: port('0 = any free port'),
    ximssTls: port('0 = off'),
    http: port('0 = any free port'),
    https: port('0 = off'),
    smtp: port('0 = off'),
    xmpp: port('0 = off'),
    xmppTls: port('0 = off'),
    xmppS2s: port('0 = off'),
    sip: port('0 = off'),
    sipTls: port('0 = off'),
  }),
  xmpp: z.strictObject({
    requireTls: z.boolean(),
    maxStanzaBytes: whole(1024),
    preAuthStanzaBytes: whole(1024),
    readBytesPerSecond: whole(1024),
    readBurstSeconds: seconds(),
    resumeSeconds: seconds0('no resumption'),
    pingSeconds: seconds(),
    webSocket: z.boolean(),
    s2s: z.strictObject({
      requireTls: z.boolean(),
      caFile: z.string(),
      idleSeconds: seconds(),
      connectSeconds: seconds(),
      queueStanzas: whole(1),
      connectionsPerAddress: whole(1),
    }),
  }),
  tls: z.strictObject({ certFile: z.string(), keyFile: z.string() }),
  sip: z.strictObject({
    publicHost: text((s) => s === '' || isIP(s) !== 0 || DOMAIN_NAME.test(s), 'must be empty (the local address) or an IP address or host name'),
    webSocket: z.boolean(),
    connections: whole(1),
    connectionsPerAddress: whole(1),
    idleSeconds: seconds(),
    outputBytes: whole(1024),
    mediaPorts: z.strictObject({
      min: number((n) => Number.isInteger(n) && n >= 1024 && n <= 65535, 'must be a UDP port number, 1024 to 65535'),
      max: number((n) => Number.isInteger(n) && n >= 1024 && n <= 65535, 'must be a UDP port number, 1024 to 65535'),
    }),
    digestAlgorithms: z
      .array(z.enum(['MD5', 'SHA-256']))
      .min(1, 'must name at least one algorithm')
      .refine((list) => new Set(list).size === list.length, 'must not name an algorithm twice'),
    trunk: text((s) => s === '' || /^sips?:[^\s@]+$/i.test(s), 'must be empty or a SIP URI without a user (sip:host[:port][;transport=tcp])'),
    // A Digest username is a quoted-string: any text but control characters.
    trunkUser: text((s) => !/[\x00-\x1f\x7f]/.test(s), 'must be text without control characters'),
    trunkPassword: z.string(),
    sessionExpires: number((n) => Number.isInteger(n) && n >= 1 && n <= 86_400, 'must be a whole number of seconds, 1 to 86400'),
    minSE: number((n) => Number.isInteger(n) && n >= 1 && n <= 86_400, 'must be a whole number of seconds, 1 to 86400 (RFC 4028: 90 or more)'),
  }),
  inbound: z.strictObject({ authenticationChecks: z.boolean() }),
  calendar: z.strictObject({ remotePrivateAddresses: z.boolean() }),
  fetch: z.strictObject({
    retrieveXML: z.boolean(),
    httpCall: z.boolean(),
    allowPrivate: z.boolean(),
    allow: z
      .array(text(isAllowEntry, 'must be an address, a CIDR prefix, a host name or *.domain, with an optional :port ([::1]:8080 for IPv6)'))
      .max(1000),
    maxBytes: whole(1),
    timeoutSeconds: number((n) => n > 0 && n <= 600, 'must be a number of seconds greater than 0 and at most 600'),
    redirects: number((n) => Number.isInteger(n) && n >= 0 && n <= 20, 'must be a whole number, 0 to 20'),
    concurrentPerAccount: whole(1),
    requestsPerMinute: whole(1),
  }),
  im: z.strictObject({
    rosterItems: whole(1),
    rosterGroups: whole(1),
    blockedItems: whole(1),
    offlineMessages: whole(0),
    offlineDays: whole(1),
    resourcesPerAccount: whole(1),
    archiveDays: whole(0),
    mucSubdomain: text((s) => /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/.test(s), 'must be one DNS label (letters, digits, hyphens), like conference'),
    mucRoomsPerService: whole(1),
    mucOccupantsPerRoom: whole(1),
    mucHistory: whole(0),
  }),
  calls: z.strictObject({
    ringSeconds: whole(5),
    callsPerAccount: whole(1),
    callsPerNode: whole(1),
    applicationRoutes: z
      .array(
        z.strictObject({
          address: text((s) => s.length > 0 && s.length <= 256 && !/\s/.test(s), 'must be an address pattern without spaces'),
          account: text((s) => /^[^\s@]+@[^\s@]+$/.test(s), 'must be an account address (name@domain)'),
          program: text((s) => /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(s), 'must be the name of an application (its file name without .js)').optional(),
        }),
      )
      .max(1000),
    rayoCallsPerAccount: whole(1),
  }),
  media: z.strictObject({
    relay: z.enum(['auto', 'always', 'never']),
    publicAddress: text((s) => s === '' || isIP(s) !== 0, 'must be empty or an IP address'),
    bindAddress: text((s) => s === '' || isIP(s) !== 0, 'must be empty or an IP address'),
    sessions: whole(1),
    sessionsPerAccount: whole(1),
    idleSeconds: whole(0),
    promptFetch: z.enum(['public', 'any']),
  }),
  apps: z.strictObject({
    directory: z.string(),
    tasksPerAccount: whole(1),
    tasksPerNode: whole(1),
    meetingDays: number((n) => n > 0 && n <= 3650, 'must be a number of days, above 0 and at most 3650'),
    meetingsPerAccount: whole(1),
  }),
  cli: z.strictObject({
    administrators: z.array(text((s) => /^[^\s@]+@[^\s@]+$/.test(s), 'must be an account address, name@domain')),
    maxCommandBytes: number((n) => Number.isSafeInteger(n) && n >= 64 && n <= 16 * 1024 * 1024, 'must be a whole number of bytes, 64 to 16777216'),
    maxDepth: number((n) => Number.isInteger(n) && n >= 1 && n <= 64, 'must be a whole number, 1 to 64'),
  }),
  skins: z.strictObject({
    directory: z.string(),
    domainDirectory: z.string(),
    maxFileBytes: number((n) => Number.isSafeInteger(n) && n >= 1 && n <= 64 * 1024 * 1024, 'must be a whole number of bytes, 1 to 67108864 (64 MB)'),
    maxFiles: whole(1),
  }),
  remoteSip: z.strictObject({
    recordsPerAccount: whole(0),
    minExpires: number((n) => Number.isInteger(n) && n >= 1 && n <= 604_800, 'must be a whole number of seconds, 1 to 604800'),
    maxExpires: number((n) => Number.isInteger(n) && n >= 1 && n <= 604_800, 'must be a whole number of seconds, 1 to 604800'),
    defaultExpires: number((n) => Number.isInteger(n) && n >= 1 && n <= 604_800, 'must be a whole number of seconds, 1 to 604800'),
    scanSeconds: seconds(),
    leaseSeconds: seconds(),
    retryMinSeconds: seconds(),
    retryMaxSeconds: seconds(),
    registrationsPerNode: whole(1),
    allowPrivate: z.boolean(),
  }),
  secrets: z.strictObject({ keyFile: z.string() }),
  smime: z.strictObject({
    maxUnlockSeconds: seconds(),
    maxMessageBytes: whole(1024),
    maxPfxBytes: number((n) => Number.isInteger(n) && n >= 1024 && n <= 16 * 1024 * 1024, 'must be a whole number of bytes, 1024 to 16777216'),
    keyBits: number((n) => n === 2048 || n === 3072 || n === 4096, 'must be 2048, 3072 or 4096'),
    certificateDays: number((n) => Number.isInteger(n) && n >= 1 && n <= 36500, 'must be a whole number of days, 1 to 36500'),
    peerCertificates: number((n) => Number.isInteger(n) && n >= 0 && n <= 1_000_000, 'must be a whole number, 0 to 1000000'),
    maxUnlockFailures: number((n) => Number.isInteger(n) && n >= 1 && n <= 1000, 'must be a whole number, 1 to 1000'),
    passwordWorkers: number((n) => Number.isInteger(n) && n >= 1 && n <= 64, 'must be a whole number, 1 to 64'),
    pfxExportsPerHour: number((n) => Number.isInteger(n) && n >= 0 && n <= 1000, 'must be a whole number, 0 to 1000'),
    maxConvertMessages: number((n) => Number.isInteger(n) && n >= 1 && n <= 100_000, 'must be a whole number, 1 to 100000'),
  }),
  remoteMail: z.strictObject({
    poll: z.boolean(),
    recordsPerAccount: number((n) => Number.isInteger(n) && n >= 0 && n <= 1000, 'must be a whole number, 0 to 1000'),
    minIntervalSeconds: number((n) => Number.isInteger(n) && n >= 1 && n <= MAX_TIMER_SECONDS, `must be a whole number of seconds, 1 to ${MAX_TIMER_SECONDS}`),
    maxIntervalSeconds: number((n) => Number.isInteger(n) && n >= 1 && n <= MAX_TIMER_SECONDS, `must be a whole number of seconds, 1 to ${MAX_TIMER_SECONDS}`),
    defaultIntervalSeconds: number((n) => Number.isInteger(n) && n >= 1 && n <= MAX_TIMER_SECONDS, `must be a whole number of seconds, 1 to ${MAX_TIMER_SECONDS}`),
    maxMessageBytes: number((n) => Number.isSafeInteger(n) && n >= 1024 && n <= 1024 * 1024 * 1024, 'must be a whole number of bytes, 1024 to 1073741824 (1 GB)'),
    messagesPerPoll: number((n) => Number.isInteger(n) && n >= 1 && n <= 100_000, 'must be a whole number, 1 to 100000'),
    timeoutSeconds: number((n) => n > 0 && n <= 3600, 'must be a number of seconds greater than 0 and at most 3600'),
    concurrency: number((n) => Number.isInteger(n) && n >= 1 && n <= 256, 'must be a whole number, 1 to 256'),
    leaseSeconds: seconds(),
    maxBackoffSeconds: seconds(),
    allowPrivate: z.boolean(),
    caFile: z.string(),
  }),
  /** Login security (src/services/two-factor.ts, app-passwords.ts; README "Two-factor login and application passwords"). */
  auth: z.strictObject({
    totpIssuer: text((s) => s.length <= 100 && !/[:\u0000-\u001f]/.test(s), 'must be at most 100 characters, without a colon or control characters'),
    recoveryCodes: number((n) => Number.isInteger(n) && n >= 1 && n <= 50, 'must be a whole number, 1 to 50'),
    appPasswordsPerAccount: number((n) => Number.isInteger(n) && n >= 0 && n <= 100, 'must be a whole number, 0 to 100 (0: none allowed)'),
    appPasswordNameLength: number((n) => Number.isInteger(n) && n >= 1 && n <= 256, 'must be a whole number of characters, 1 to 256'),
    secondFactorFailures: number((n) => Number.isInteger(n) && n >= 1 && n <= 1000, 'must be a whole number, 1 to 1000'),
    secondFactorWindowSeconds: number((n) => Number.isInteger(n) && n >= 60 && n <= 86_400, 'must be a whole number of seconds, 60 to 86400'),
    pendingSessionsPerAccount: number((n) => Number.isInteger(n) && n >= 1 && n <= 100, 'must be a whole number, 1 to 100'),
  }),
  billing: z.strictObject({
    currency: text((s) => /^[A-Z]{3}$/.test(s), 'must be a currency code of 3 capital letters (such as USD)'),
    maxAmount: number((n) => Number.isSafeInteger(n) && n >= 1 && n <= 1e15, 'must be a whole number of minor units, 1 to 10^15'),
    maxBalance: number((n) => Number.isSafeInteger(n) && n >= 1 && n <= 1e15, 'must be a whole number of minor units, 1 to 10^15'),
    historyLimit: number((n) => Number.isInteger(n) && n >= 1 && n <= 10_000, 'must be a whole number, 1 to 10000'),
  }),
  outbound: z.strictObject({
    relay: text((s) => s === '' || isHostPort(s), "must be empty (to each domain's MX hosts) or host:port"),
    relayUser: z.string(),
    relayPassword: z.string(),
    starttls: z.enum(STARTTLS_MODES),
    mxPort: number((n) => Number.isInteger(n) && n >= 1 && n <= 65535, 'must be a port number, 1 to 65535'),
    firstRetrySeconds: seconds(),
    maxRetrySeconds: seconds(),
    lifetimeSeconds: number((n) => n > 0 && Number.isFinite(n), 'must be a number of seconds greater than 0'),
    concurrency: whole(1),
    leaseSeconds: seconds(),
  }),
  limits: z.strictObject({
    maxRequestBytes: whole(1),
    preLoginRequestBytes: whole(1),
    maxPendingRequests: whole(1),
    preLoginRequests: whole(1),
    preLoginOutputBytes: whole(1),
    maxAnswerBytes: whole(1),
    xmlDepth: whole(1),
    xmlElements: whole(1),
    preLoginXmlElements: whole(1),
    xmlAttributes: whole(1),
    xmlAttributeChars: whole(1),
    xmlTextChars: whole(1),
    connectionsPerAddress: whole(1),
    preLoginConnections: whole(1),
    abusePerAddress: whole(0),
    abuseBlockSeconds: seconds(),
    firstRequestSeconds: seconds(),
    loginSeconds: seconds(),
    httpHeadersSeconds: seconds(),
    httpRequestSeconds: seconds(),
    httpKeepAliveSeconds: seconds(),
    idleTimeoutSeconds: seconds(),
    sessionsPerAccount: whole(1),
    sessionDataBytes: whole(1),
    sessionDataKeys: whole(1),
    foldersPerSession: whole(1),
    foldersPerAccount: whole(1),
    loginFailureDelayMs: millis(),
    loginFailuresPerAddress: whole(1),
    loginFailuresPerAccount: whole(1),
    accountSlowdownMs: millis(),
    loginFailureWindowSeconds: seconds(),
    smtpErrorsPerConnection: whole(1),
    maxPollSeconds: seconds0('polls answer at once'),
    maxMessageBytes: whole(1),
    uploadBytesPerSession: whole(1),
    uploadBytesPerAccount: whole(1),
    uploadBytesTotal: whole(1),
    searchSeconds: seconds(),
    filterSeconds: seconds(),
    spellerTextBytes: whole(1),
    spellerWords: whole(1),
    spellerGuessWords: whole(0),
    spellerGuessSeconds: seconds(),
    spellerPending: whole(1),
  }),
});

/** Every key path of an object type (`limits.xmlDepth`), arrays as leaves. */
type KeyPaths<T> = T extends readonly unknown[]
  ? never
  : T extends object
    ? { [K in keyof T & string]: K | `${K}.${KeyPaths<T[K]>}` }[keyof T & string]
    : never;
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
/**
 * Checked by the compiler: the schema and the Config interface name the same keys, and what
 * the schema accepts is a Config (the schema may be narrower: `starttls` is one of three).
 */
const schemaMatchesConfig: [Same<KeyPaths<Config>, KeyPaths<z.infer<typeof configSchema>>>, z.infer<typeof configSchema> extends Config ? true : false] = [true, true];
void schemaMatchesConfig;

// ---------------------------------------------------------------------------------------------
// Problems and their report.

/** One thing wrong: where it came from (the file as named, or "command line"), the key, what is wrong. */
export interface ConfigProblem {
  origin: string;
  /** Dotted key path (`outbound.starttls`, `metrics.allow[1]`); '' for the file as a whole. */
  path: string;
  message: string;
}

/** The configuration is wrong: every problem found, each reported on one line. */
export class ConfigError extends Error {
  constructor(readonly problems: readonly ConfigProblem[]) {
    super(problems.map(problemLine).join('\n'));
    this.name = 'ConfigError';
  }

  /** The lines for standard error: `ximssd: config.json: outbound.starttls: must be one of … (got "requred")`. */
  lines(): string[] {
    return this.problems.map((problem) => `ximssd: ${problemLine(problem)}`);
  }
}

function problemLine(problem: ConfigProblem): string {
  return [problem.origin, problem.path, problem.message].filter((part) => part !== '').join(': ');
}

/** How the flags of `ximssd serve` and the other commands are named on the command line. */
const FLAG_NAMES: Record<string, string> = {
  dataDir: '--data',
  store: '--store',
  host: '--host',
  'ports.ximss': '--ximss',
  'ports.http': '--http',
  'ports.smtp': '--smtp',
  'ports.xmpp': '--xmpp',
  'ports.xmppTls': '--xmpp-tls',
  'ports.xmppS2s': '--xmpp-s2s',
  'ports.sip': '--sip',
  'ports.sipTls': '--sip-tls',
  'outbound.relay': '--relay',
  'log.level': '--log-level',
};

type Segment = string | number;

function dotted(path: readonly Segment[]): string {
  return path.map((s, i) => (typeof s === 'number' ? `[${s}]` : i === 0 ? s : `.${s}`)).join('');
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function lookup(value: unknown, path: readonly Segment[]): { found: boolean; value?: unknown } {
  let current = value;
  for (const segment of path) {
    if (typeof segment === 'number' ? !Array.isArray(current) : !isPlainObject(current)) return { found: false };
    const container = current as Record<string | number, unknown>;
    if (!Object.prototype.hasOwnProperty.call(container, segment)) return { found: false };
    current = container[segment];
  }
  return { found: true, value: current };
}

/** What was given, for the message: short, and never a password. */
function shown(path: readonly Segment[], value: unknown): string {
  const last = path[path.length - 1];
  // A password, or a store URL that may hold one (it did not validate, so it cannot be parsed to hide it).
  if (typeof last === 'string' && /password/i.test(last)) return '';
  if (path.length === 1 && last === 'store') return '';
  let json = JSON.stringify(value) ?? String(value);
  if (json.length > 80) json = `${json.slice(0, 77)}…`;
  return ` (got ${json})`;
}

function typeRule(expected: string): string {
  switch (expected) {
    case 'object':
      return 'must be an object ({ … })';
    case 'array':
      return 'must be a list ([ … ])';
    case 'boolean':
      return 'must be true or false';
    case 'string':
      return 'must be a string (in quotes)';
    case 'number':
      return 'must be a number';
    default:
      return `must be a ${expected}`;
  }
}

/** The nearest known key to a misspelt one, if it is near. */
function suggestion(key: string, known: readonly string[]): string | undefined {
  // Optimal string alignment distance: edits and transpositions of neighbours (hots → host).
  const distance = (a: string, b: string): number => {
    const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
    for (let i = 1; i <= a.length; i++) {
      for (let j = 1; j <= b.length; j++) {
        const cost = a[i - 1] === b[j - 1] ? 0 : 1;
        d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
        if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
      }
    }
    return d[a.length]![b.length]!;
  };
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const d = candidate.toLowerCase() === key.toLowerCase() ? 0 : distance(key, candidate);
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  return bestDistance <= Math.max(1, Math.floor(key.length / 4)) ? best : undefined;
}

interface Sources {
  /** Each source of settings, lowest precedence first: the name it is reported under, and what it set. */
  readonly layers: readonly { origin: string; values: unknown }[];
}

/** The source that set `path` (the highest one wins), else the first that set one of `related`. */
function originOf(sources: Sources, path: readonly Segment[], related: readonly (readonly Segment[])[] = []): string {
  for (const candidate of [path, ...related]) {
    for (let i = sources.layers.length - 1; i >= 0; i--) {
      const layer = sources.layers[i]!;
      if (lookup(layer.values, candidate).found) return layer.origin;
    }
  }
  return sources.layers[sources.layers.length - 1]?.origin ?? 'configuration';
}

function pathText(origin: string, path: readonly Segment[]): string {
  const name = dotted(path);
  const flag = origin === 'command line' ? FLAG_NAMES[name] : undefined;
  return flag ? `${name} (${flag})` : name;
}

/** Checks a merged configuration against the schema and the rules between keys: every problem found. */
function schemaProblems(merged: unknown, sources: Sources): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const add = (path: readonly Segment[], message: string, related: readonly (readonly Segment[])[] = [], withValue = true): void => {
    const origin = originOf(sources, path, related);
    const value = lookup(merged, path);
    problems.push({ origin, path: pathText(origin, path), message: message + (withValue && value.found ? shown(path, value.value) : '') });
  };
  const result = configSchema.safeParse(merged);
  if (!result.success) {
    for (const issue of result.error.issues) {
      const path = issue.path.filter((s): s is Segment => typeof s !== 'symbol');
      switch (issue.code) {
        case 'unrecognized_keys': {
          const known = Object.keys((lookup(defaultConfig(), path).value as Record<string, unknown> | undefined) ?? {});
          for (const key of issue.keys) {
            const near = suggestion(key, known);
            add([...path, key], `unknown setting${near ? ` (did you mean ${dotted([...path, near])}?)` : ''}`, [], false);
          }
          break;
        }
        case 'invalid_type':
          add(path, typeRule(issue.expected));
          break;
        case 'invalid_value':
          add(path, `must be one of ${issue.values.map(String).join(', ')}`);
          break;
        default:
          add(path, issue.message);
      }
    }
  }
  // Rules between keys, checked where both are numbers / strings.
  const num = (path: Segment[]): number | undefined => {
    const value = lookup(merged, path).value;
    return typeof value === 'number' ? value : undefined;
  };
  const pairs: [Segment[], Segment[], (a: number, b: number) => boolean, string][] = [
    [['cluster', 'nodeTimeoutSeconds'], ['cluster', 'heartbeatSeconds'], (a, b) => a > b, 'must be greater than cluster.heartbeatSeconds'],
    [['outbound', 'maxRetrySeconds'], ['outbound', 'firstRetrySeconds'], (a, b) => a >= b, 'must be at least outbound.firstRetrySeconds'],
    [['limits', 'httpHeadersSeconds'], ['limits', 'httpRequestSeconds'], (a, b) => a <= b, 'must be at most limits.httpRequestSeconds'],
    // An RTP session takes a port pair (RTP and RTCP, RFC 3550 11): the range holds one at least.
    [['sip', 'mediaPorts', 'max'], ['sip', 'mediaPorts', 'min'], (a, b) => a > b, 'must be greater than sip.mediaPorts.min'],
    [['sip', 'sessionExpires'], ['sip', 'minSE'], (a, b) => a >= b, 'must be at least sip.minSE'],
    [['remoteSip', 'maxExpires'], ['remoteSip', 'minExpires'], (a, b) => a >= b, 'must be at least remoteSip.minExpires'],
    [['remoteSip', 'defaultExpires'], ['remoteSip', 'minExpires'], (a, b) => a >= b, 'must be at least remoteSip.minExpires'],
    [['remoteSip', 'defaultExpires'], ['remoteSip', 'maxExpires'], (a, b) => a <= b, 'must be at most remoteSip.maxExpires'],
    [['remoteSip', 'retryMaxSeconds'], ['remoteSip', 'retryMinSeconds'], (a, b) => a >= b, 'must be at least remoteSip.retryMinSeconds'],
    // A lease outlives two scans: a holder that misses one renewal keeps its records.
    [['remoteSip', 'leaseSeconds'], ['remoteSip', 'scanSeconds'], (a, b) => a >= 2 * b, 'must be at least twice remoteSip.scanSeconds'],
    [['remoteMail', 'maxIntervalSeconds'], ['remoteMail', 'minIntervalSeconds'], (a, b) => a >= b, 'must be at least remoteMail.minIntervalSeconds'],
    [['remoteMail', 'defaultIntervalSeconds'], ['remoteMail', 'minIntervalSeconds'], (a, b) => a >= b, 'must be at least remoteMail.minIntervalSeconds'],
    [['remoteMail', 'maxIntervalSeconds'], ['remoteMail', 'defaultIntervalSeconds'], (a, b) => a >= b, 'must be at least remoteMail.defaultIntervalSeconds'],
    [['remoteMail', 'leaseSeconds'], ['remoteMail', 'timeoutSeconds'], (a, b) => a > b, 'must be greater than remoteMail.timeoutSeconds'],
  ];
  for (const [path, other, ok, rule] of pairs) {
    const a = num(path);
    const b = num(other);
    if (a !== undefined && b !== undefined && !ok(a, b)) add(path, `${rule} (${b})`, [other]);
  }
  const sipText = (key: string): string | undefined => {
    const value = lookup(merged, ['sip', key]).value;
    return typeof value === 'string' ? value : undefined;
  };
  if (sipText('trunkUser') && sipText('trunk') === '') add(['sip', 'trunkUser'], 'needs sip.trunk (the credentials are for the trunk only)', [['sip', 'trunk']]);
  if (sipText('trunkPassword') && sipText('trunkUser') === '') add(['sip', 'trunkPassword'], 'needs sip.trunkUser', [['sip', 'trunkUser']], false);
  const certFile = lookup(merged, ['tls', 'certFile']).value;
  const keyFile = lookup(merged, ['tls', 'keyFile']).value;
  if (typeof certFile === 'string' && typeof keyFile === 'string' && (certFile === '') !== (keyFile === '')) {
    const [missing, given] = certFile === '' ? (['certFile', 'keyFile'] as const) : (['keyFile', 'certFile'] as const);
    add(['tls', missing], `must be set together with tls.${given} (both, or neither for a generated certificate)`, [['tls', given]], false);
  }
  return problems;
}

function readProblem(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'EISDIR') return 'is a directory';
  return err instanceof Error ? err.message : String(err);
}

/** The certificate and key files: readable, PEM, and a pair. */
function tlsFileProblems(merged: unknown, sources: Sources): ConfigProblem[] {
  const certFile = lookup(merged, ['tls', 'certFile']).value;
  const keyFile = lookup(merged, ['tls', 'keyFile']).value;
  if (typeof certFile !== 'string' || typeof keyFile !== 'string' || certFile === '' || keyFile === '') return [];
  const files = { certFile, keyFile };
  const problems: ConfigProblem[] = [];
  const add = (key: 'certFile' | 'keyFile', message: string): void => {
    const origin = originOf(sources, ['tls', key]);
    problems.push({ origin, path: `tls.${key}`, message: `${message} (got ${JSON.stringify(files[key])})` });
  };
  let cert: X509Certificate | undefined;
  let key: ReturnType<typeof createPrivateKey> | undefined;
  try {
    const pem = readFileSync(certFile);
    try {
      if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new Error('no certificate');
      cert = new X509Certificate(pem);
    } catch {
      add('certFile', 'is not a PEM certificate (-----BEGIN CERTIFICATE-----)');
    }
  } catch (err) {
    add('certFile', `cannot be read: ${readProblem(err)}`);
  }
  try {
    const pem = readFileSync(keyFile);
    try {
      if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(pem.toString('latin1'))) throw new Error('no key');
      key = createPrivateKey(pem);
    } catch {
      add('keyFile', 'is not an unencrypted PEM private key (-----BEGIN PRIVATE KEY-----)');
    }
  } catch (err) {
    add('keyFile', `cannot be read: ${readProblem(err)}`);
  }
  if (cert && key && !cert.checkPrivateKey(key)) add('keyFile', `is not the key of the certificate in tls.certFile`);
  return problems;
}

/** Merges `source` into `target` (objects key by key, anything else replaced); undefined values are skipped. */
function deepMerge(target: unknown, source: unknown): unknown {
  if (source === undefined) return target;
  if (!isPlainObject(target) || !isPlainObject(source)) return structuredClone(source);
  const merged: Record<string, unknown> = { ...target };
  for (const [key, value] of Object.entries(source)) merged[key] = deepMerge(target[key], value);
  return merged;
}

/**
 * Deep-merges `overrides` into `base` and checks the result against the schema (unknown
 * keys, types, ranges; not the files it names): a ConfigError lists every problem, under
 * `origin`. The tests build their configurations with it.
 */
export function mergeConfig(base: Config, overrides: unknown, origin: string): Config {
  const sources: Sources = { layers: [{ origin, values: overrides }] };
  if (!isPlainObject(overrides)) throw new ConfigError([{ origin, path: '', message: 'the configuration must be an object ({ … })' }]);
  const merged = deepMerge(base, overrides);
  const problems = schemaProblems(merged, sources);
  if (problems.length > 0) throw new ConfigError(problems);
  return merged as Config;
}

// ---------------------------------------------------------------------------------------------
// The file.

/** The offset of the first syntax error in `text` (JSON, RFC 8259), or -1. */
function jsonErrorOffset(text: string): number {
  let i = 0;
  const stop = new Error('syntax');
  const fail = (): never => {
    throw stop;
  };
  const ws = (): void => {
    while (i < text.length && ' \t\n\r'.includes(text[i]!)) i++;
  };
  const expect = (char: string): void => {
    if (text[i] !== char) fail();
    i++;
  };
  const string = (): void => {
    expect('"');
    for (;;) {
      const c = text[i];
      if (c === undefined || c < ' ') fail();
      if (c === '"') return void i++;
      if (c === '\\') {
        i++;
        if (text[i] === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 1, i + 5))) fail();
          i += 5;
        } else if (text[i] !== undefined && '"\\/bfnrt'.includes(text[i]!)) i++;
        else fail();
      } else i++;
    }
  };
  const value = (): void => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      ws();
      if (text[i] === '}') return void i++;
      for (;;) {
        ws();
        string();
        ws();
        expect(':');
        value();
        ws();
        if (text[i] === ',') i++;
        else return expect('}');
      }
    }
    if (c === '[') {
      i++;
      ws();
      if (text[i] === ']') return void i++;
      for (;;) {
        value();
        ws();
        if (text[i] === ',') i++;
        else return expect(']');
      }
    }
    if (c === '"') return string();
    for (const literal of ['true', 'false', 'null']) {
      if (text.startsWith(literal, i)) return void (i += literal.length);
    }
    const number = /-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
    number.lastIndex = i;
    if (!number.test(text)) fail();
    i = number.lastIndex;
  };
  try {
    value();
    ws();
    if (i < text.length) fail();
    return -1;
  } catch (err) {
    if (err === stop) return i;
    throw err;
  }
}

/** Reads and parses the configuration file; a ConfigError names the file (and where the JSON is broken). */
export function readConfigFile(file: string): unknown {
  const problem = (message: string): ConfigError => new ConfigError([{ origin: file, path: '', message }]);
  let content: string;
  try {
    content = readFileSync(file, 'utf8');
  } catch (err) {
    throw problem(`cannot be read: ${readProblem(err)}`);
  }
  if (content.charCodeAt(0) === 0xfeff) content = content.slice(1);
  let parsed: unknown;
  try {
    parsed = JSON.parse(content);
  } catch (err) {
    const offset = jsonErrorOffset(content);
    const at = offset < 0 ? 0 : offset;
    const before = content.slice(0, at);
    const line = before.split('\n').length;
    const column = at - before.lastIndexOf('\n');
    const why = (err as Error).message
      .replace(/, .*is not valid JSON$/s, '')
      .replace(/ in JSON at position \d+.*$/s, '')
      .replace(/^Unexpected end of JSON input$/, 'unexpected end of the file');
    throw problem(`line ${line}, column ${column}: not valid JSON: ${why}`);
  }
  if (!isPlainObject(parsed)) throw problem('must hold a JSON object ({ … })');
  return parsed;
}

/**
 * The configuration: the defaults, the file (JSON) over them, the command-line flags over
 * that; checked as a whole (schema, rules between keys, the certificate files) before
 * anything starts. A ConfigError lists every problem, each naming where the value came from.
 */
export function loadConfig(file: string | undefined, flags: ConfigOverrides | Record<string, unknown>): Config {
  const layers: { origin: string; values: unknown }[] = [];
  if (file) layers.push({ origin: file, values: readConfigFile(file) });
  layers.push({ origin: 'command line', values: flags });
  const sources: Sources = { layers };
  let merged: unknown = defaultConfig();
  for (const layer of layers) merged = deepMerge(merged, layer.values);
  const problems = [...schemaProblems(merged, sources), ...tlsFileProblems(merged, sources)];
  if (problems.length > 0) throw new ConfigError(problems);
  const config = merged as Config;
  config.dataDir = resolve(config.dataDir);
  return config;
}
