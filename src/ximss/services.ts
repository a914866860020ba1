import type { SecureContext } from 'node:tls';
import type { Config } from '../config.js';
import type { AccountService } from '../services/accounts.js';
import type { AlertService } from '../services/alerts.js';
import type { AuthService } from '../services/auth.js';
import type { ConnectionLimiter } from '../services/connections.js';
import type { CalendarService } from '../services/calendar/service.js';
import type { ContactService } from '../services/contacts/service.js';
import type { DatasetService } from '../services/datasets.js';
import type { BillingService } from '../services/billing.js';
import type { FileStorage } from '../services/files/api.js';
import type { HttpCallService } from '../services/http-call.js';
import type { AccountRightsService } from '../services/account-rights.js';
import type { DirectoryService } from '../services/directory.js';
import type { PasswordRecovery } from '../services/password-recovery.js';
import type { ClusterNode } from '../services/cluster.js';
import type { EventBus } from '../bus/bus.js';
import type { MailService } from '../services/mail/service.js';
import type { RuleService } from '../services/rules/service.js';
import type { LocalDelivery } from '../transports/smtp/local-delivery.js';
import type { MailQueue } from '../transports/smtp/queue.js';
import type { Store } from '../store/store.js';
import type { NonceRegistry } from './nonces.js';
import type { SessionManager } from './sessions.js';
import type { UploadSpool } from './uploads.js';
import type { Vocabulary } from './vocabulary.js';
import type { CliService } from '../services/cli/interpreter.js';
import type { SecretBox } from '../services/secret-box.js';
import type { RemoteSipService } from '../services/remote-sip/records.js';
import type { RemoteMailService } from '../services/remote-mail/service.js';
import type { SkinService } from '../services/skins.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { ImService } from '../services/im/service.js';
import type { AppService } from '../services/apps/service.js';
import type { CallService } from '../services/calls/service.js';
import type { SipService } from '../transports/sip/service.js';

/** What XIMSS operation handlers may use: the services, never the store's SQL. */
export interface XimssServices {
  readonly config: Config;
  readonly store: Store;
  readonly bus: EventBus;
  readonly accounts: AccountService;
  readonly auth: AuthService;
  readonly alerts: AlertService;
  readonly mail: MailService;
  readonly rules: RuleService;
  readonly datasets: DatasetService;
  /** The accounts' File Storage (XIMSS file operations, DOWNLOAD, WebDAV). */
  readonly files: FileStorage;
  /** Contact items (vCards) in mailboxes: the Contacts operations, later CardDAV. */
  readonly contacts: ContactService;
  readonly calendars: CalendarService;
  /** Instant messages, presence and rosters (XIMSS and XMPP clients alike). */
  readonly im: ImService;
  /** The call engine (spec "Signaling"; SIP and Rayo later). */
  readonly calls: CallService;
  /** Real-time applications: tasks, events, meetings, scripts (src/services/apps/). */
  readonly apps: AppService;
  /** Account Access Rights (accountACL*, the rights other accounts' data is reached with). */
  readonly accountRights: AccountRightsService;
  /** Account balances and their ledger (the `balance` operation). */
  readonly billing: BillingService;
  /** HTTP requests users make through the server (retrieveXML, httpCall): destinations and limits. */
  readonly httpCalls: HttpCallService;
  /** The directory of the domains' accounts (listDirectory, modifyDirectory). */
  readonly directory: DirectoryService;
  /** The outbound queue: messageSubmit and its relatives, Mail Rules, delivery reports. */
  readonly queue: MailQueue;
  /** Final delivery into local accounts, through their Mail Rules (SMTP in, the queue). */
  readonly delivery: LocalDelivery;
  /** recoverPassword's reset links. */
  readonly passwordRecovery: PasswordRecovery;
  readonly sessions: SessionManager;
  /** This process as a node of the cluster (its id begins the urlIDs it hands out). */
  readonly node: ClusterNode;
  /** Connections not logged in, per client address and server-wide (XIMSS, HTTP, SMTP). */
  readonly connections: ConnectionLimiter;
  /** The spool of the sessions' uploaded files (HTTP UPLOAD) and their quotas. */
  readonly uploads: UploadSpool;
  readonly nonces: NonceRegistry;
  readonly vocabulary: Vocabulary;
  /** cliExecute's interpreter of the administrator CLI commands. */
  readonly cli: CliService;
  /** Seals the secrets the server must use again in clear (remote accounts' passwords, OTP seeds). */
  readonly secrets: SecretBox;
  /** The accounts' registrations with other SIP servers (rsipList, rsipUpdate). */
  readonly remoteSip: RemoteSipService;
  /** Remote POP and IMAP accounts: their records and the poller (src/services/remote-mail/). */
  readonly remoteMail: RemoteMailService;
  /** Skins and configuration files (skinList, skinFileRead, readConfigFile...). */
  readonly skins: SkinService;
  /**
   * SIP (undefined when ports.sip and ports.sipTls are 0): the registrar and the call engine
   * register their handlers on it (handle, onStray).
   */
  readonly sip: SipService | undefined;
  /** The TLS context for starttls and implicit-TLS listeners. */
  readonly tls: SecureContext | undefined;
  /** The XIMSS protocol version reported in `session` (6.x.y: what clients test for). */
  readonly version: string;
  /** The structured log (components take a child: ximss, http, smtp…). */
  readonly log: Logger;
  readonly metrics: Metrics;
}
