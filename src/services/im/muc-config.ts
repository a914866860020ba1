import type { RoomRecord } from '../../store/im.js';
import { el, type XmlElement } from '../../xml/element.js';
import { NS } from './stanzas.js';

/** The XEP-0045 namespaces. */
export const MUC = {
  muc: 'http://jabber.org/protocol/muc',
  user: 'http://jabber.org/protocol/muc#user',
  admin: 'http://jabber.org/protocol/muc#admin',
  owner: 'http://jabber.org/protocol/muc#owner',
  roomconfig: 'http://jabber.org/protocol/muc#roomconfig',
  roominfo: 'http://jabber.org/protocol/muc#roominfo',
  unique: 'http://jabber.org/protocol/muc#unique',
} as const;

/** Who sees an occupant's real JID: moderators only (semi-anonymous) or everyone (non-anonymous). */
export type Whois = 'moderators' | 'anyone';

/** A room's configuration (the muc#roomconfig fields the service keeps). */
export interface RoomConfig {
  name: string;
  description: string;
  persistent: boolean;
  public: boolean;
  membersOnly: boolean;
  moderated: boolean;
  passwordProtected: boolean;
  password: string;
  /** At most this many occupants (0: the service's limit). */
  maxUsers: number;
  whois: Whois;
  /** Participants (not only moderators) may change the subject. */
  changeSubject: boolean;
  /** Messages of the discussion history kept and replayed to newcomers. */
  historyLength: number;
}

/** A new room's configuration (XEP-0045 10.1.2's usual defaults: temporary, public, open, semi-anonymous). */
export function defaultConfig(historyLength: number): RoomConfig {
  return {
    name: '',
    description: '',
    persistent: false,
    public: true,
    membersOnly: false,
    moderated: false,
    passwordProtected: false,
    password: '',
    maxUsers: 0,
    whois: 'moderators',
    changeSubject: false,
    historyLength,
  };
}

/** A stored configuration read back (fields missing or of the wrong type keep their defaults). */
export function configFromRecord(stored: RoomRecord['config'], historyLength: number): RoomConfig {
  const config = defaultConfig(historyLength);
  const target = config as unknown as Record<string, unknown>;
  for (const [key, value] of Object.entries(config)) {
    const kept = stored[key];
    if (kept !== undefined && typeof kept === typeof value) target[key] = kept;
  }
  if (config.whois !== 'anyone') config.whois = 'moderators';
  // The service's limit may have been lowered since.
  config.historyLength = Math.min(config.historyLength, historyLength);
  return config;
}

export function configToRecord(config: RoomConfig): RoomRecord['config'] {
  return { ...config };
}

const MAX_TEXT = 1024;

/** A form the owner submitted could not be taken: the XMPP condition and a text. */
export class ConfigError extends Error {
  constructor(
    readonly condition: string,
    message: string,
  ) {
    super(message);
  }
}

/** The owner's configuration form (XEP-0045 10.2), filled with the current values. */
export function configForm(config: RoomConfig, maxUsers: number, maxHistory: number): XmlElement {
  const form = el('x', { xmlns: NS.dataForms, type: 'form' }, el('title', undefined, 'Room configuration'));
  const field = (v: string, type: string, label: string, value: string | boolean | number, options?: [string, string][]): void => {
    const f = form.add('field', { var: v, type, label });
    f.add('value', undefined, typeof value === 'boolean' ? (value ? '1' : '0') : String(value));
    for (const [val, lab] of options ?? []) f.append(el('option', { label: lab }, el('value', undefined, val)));
  };
  form.append(el('field', { var: 'FORM_TYPE', type: 'hidden' }, el('value', undefined, MUC.roomconfig)));
  field('muc#roomconfig_roomname', 'text-single', 'Name', config.name);
  field('muc#roomconfig_roomdesc', 'text-single', 'Description', config.description);
  field('muc#roomconfig_persistentroom', 'boolean', 'Keep the room when it is empty', config.persistent);
  field('muc#roomconfig_publicroom', 'boolean', 'List the room publicly', config.public);
  field('muc#roomconfig_membersonly', 'boolean', 'Members only', config.membersOnly);
  field('muc#roomconfig_moderatedroom', 'boolean', 'Moderated (only those with voice may speak)', config.moderated);
  field('muc#roomconfig_passwordprotectedroom', 'boolean', 'A password is needed to enter', config.passwordProtected);
  field('muc#roomconfig_roomsecret', 'text-private', 'Password', config.password);
  field('muc#roomconfig_maxusers', 'text-single', `Most occupants (at most ${maxUsers})`, config.maxUsers || maxUsers);
  field('muc#roomconfig_whois', 'list-single', 'Who may see real addresses', config.whois, [
    ['moderators', 'Moderators only'],
    ['anyone', 'Anyone'],
  ]);
  field('muc#roomconfig_changesubject', 'boolean', 'Participants may change the subject', config.changeSubject);
  field('muc#roomconfig_historylength', 'text-single', `Messages of history kept (at most ${maxHistory})`, config.historyLength);
  return form;
}

function bool(value: string, v: string): boolean {
  if (value === '1' || value === 'true') return true;
  if (value === '0' || value === 'false') return false;
  throw new ConfigError('not-acceptable', `${v} is a boolean (0, 1, true, false), not ${JSON.stringify(value.slice(0, 40))}`);
}

function whole(value: string, v: string, max: number): number {
  const n = Number(value.trim());
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n)) throw new ConfigError('not-acceptable', `${v} is a whole number, not ${JSON.stringify(value.slice(0, 40))}`);
  if (n > max) throw new ConfigError('not-acceptable', `${v} is at most ${max}`);
  return n;
}

function text(value: string, v: string): string {
  if (value.length > MAX_TEXT) throw new ConfigError('not-acceptable', `${v} is longer than ${MAX_TEXT} characters`);
  return value;
}

/**
 * The configuration a submitted form (`x type="submit"`) asks for: the fields given replace
 * the current values, the others stay (an empty form accepts them all: the instant room of
 * XEP-0045 10.1.2). Unknown fields are ignored (clients send their own); bad values are refused.
 */
export function applyForm(current: RoomConfig, form: XmlElement, maxUsers: number, maxHistory: number): RoomConfig {
  const next: RoomConfig = { ...current };
  for (const field of form.elements('field')) {
    const v = field.attrs.var ?? '';
    const values = field.elements('value').map((e) => e.text());
    const value = values[0] ?? '';
    switch (v) {
      case 'muc#roomconfig_roomname':
        next.name = text(value, v);
        break;
      case 'muc#roomconfig_roomdesc':
        next.description = text(value, v);
        break;
      case 'muc#roomconfig_persistentroom':
        next.persistent = bool(value, v);
        break;
      case 'muc#roomconfig_publicroom':
        next.public = bool(value, v);
        break;
      case 'muc#roomconfig_membersonly':
        next.membersOnly = bool(value, v);
        break;
      case 'muc#roomconfig_moderatedroom':
        next.moderated = bool(value, v);
        break;
      case 'muc#roomconfig_passwordprotectedroom':
        next.passwordProtected = bool(value, v);
        break;
      case 'muc#roomconfig_roomsecret':
        next.password = text(value, v);
        break;
      case 'muc#roomconfig_maxusers':
        next.maxUsers = value === '' || value === 'none' ? 0 : whole(value, v, maxUsers);
        break;
      case 'muc#roomconfig_whois':
        if (value !== 'moderators' && value !== 'anyone') throw new ConfigError('not-acceptable', 'muc#roomconfig_whois is moderators or anyone');
        next.whois = value;
        break;
      case 'muc#roomconfig_changesubject':
        next.changeSubject = bool(value, v);
        break;
      case 'muc#roomconfig_historylength':
      case 'muc#maxhistoryfetch':
        next.historyLength = whole(value, v, maxHistory);
        break;
    }
  }
  if (next.passwordProtected && next.password === '') throw new ConfigError('not-acceptable', 'a password-protected room needs muc#roomconfig_roomsecret');
  if (!next.passwordProtected) next.password = '';
  return next;
}

/** The room's features for disco#info (XEP-0045 6.4). */
export function roomFeatures(config: RoomConfig): string[] {
  return [
    MUC.muc,
    config.persistent ? 'muc_persistent' : 'muc_temporary',
    config.public ? 'muc_public' : 'muc_hidden',
    config.membersOnly ? 'muc_membersonly' : 'muc_open',
    config.moderated ? 'muc_moderated' : 'muc_unmoderated',
    config.passwordProtected ? 'muc_passwordprotected' : 'muc_unsecured',
    config.whois === 'anyone' ? 'muc_nonanonymous' : 'muc_semianonymous',
    NS.discoInfo,
  ];
}
