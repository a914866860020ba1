/**
 * CardDAV resource names (src/transports/dav/carddav.ts): the name a client gave a card
 * (`<uuid>.vcf`), kept by (mailbox, ORIGUID) — a card replaced keeps its ORIGUID, so the
 * name follows the card through its versions. Rows are never changed and outlive the
 * card: sync-collection names removed members (the journal gives their ORIGUIDs) by them.
 * They go with their mailbox.
 */
export interface DavNameStore {
  /** Records a card's name; a second record of the same (mailbox, ORIGUID) keeps the first. */
  record(mailboxId: number, origUid: number, name: string): Promise<void>;
  /** The names of these ORIGUIDs (all of the mailbox's when undefined). */
  names(mailboxId: number, origUids?: readonly number[]): Promise<Map<number, string>>;
}
