/** RFC 3461 NOTIFY for one recipient: when to send a delivery report to the sender. */
export interface DsnNotify {
  success: boolean;
  failure: boolean;
  delay: boolean;
}

export interface OutgoingRecipient {
  address: string;
  /** Default: failure reports only. */
  notify?: DsnNotify;
  /** RFC 3461 ORCPT (`rfc822;addr`), passed on and shown in reports. */
  orcpt?: string;
}

/** A message handed to the queue for delivery. */
export interface OutgoingMessage {
  /** The envelope sender (reverse path) without brackets; '' for the null sender (reports, auto-replies). */
  sender: string;
  recipients: readonly (string | OutgoingRecipient)[];
  /** The complete message (header and body), CRLF line ends. */
  raw: Buffer;
  /** RFC 3461 RET: return the full message or only its header in failure reports (default HDRS). */
  ret?: 'FULL' | 'HDRS';
  envid?: string;
  /** How the message reached the server, for Mail Rules' Source condition of local recipients. */
  source: 'authenticated' | 'remote';
  /**
   * Makes the submission idempotent: a second message with the same key is ignored. A
   * delivery that re-runs after a crash (rules redirecting or replying) passes one.
   */
  key?: string;
}

/** What Mail Rules, submission and delivery reports use to send mail. */
export interface MailSubmitter {
  /** Resolves once the message is committed to the queue (durable); delivery follows. */
  submit(message: OutgoingMessage): Promise<void>;
}

/** The outbound queue (being built). */
export class MailQueue implements MailSubmitter {
  async submit(_message: OutgoingMessage): Promise<void> {
    throw new Error('the outbound queue is not implemented yet');
  }
}
