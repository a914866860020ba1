/** The part of @xmpp/jid (0.14, which ships no types) that the server uses. */
declare module '@xmpp/jid' {
  export class JID {
    constructor(local: string | null | undefined, domain: string, resource?: string | null);
    readonly local: string;
    getLocal(unescape?: boolean): string;
    getDomain(): string;
    getResource(): string;
    bare(): JID;
    equals(other: JID): boolean;
    toString(unescape?: boolean): string;
  }
  export function parse(address: string): JID;
  export function jid(address: string): JID;
  const j: { parse: typeof parse; JID: typeof JID };
  export default j;
}
