/**
 * Time zone names of the TimeZone preference: IANA names (`Europe/Berlin`), `HostOS` (the
 * server's own zone), and the names CommuniGate Pro's own clients and settings use, each
 * mapped to the IANA zone it stands for.
 *
 * CommuniGate's names are those of its TimeZones.data list as a CommuniGate Pro integration
 * records them (Freeside, FS/FS/svc_CGP_Mixin.pm, which cites
 * http://www.communigate.com/pub/client/TimeZones.data), and `NorthAmerica/Pacific`, the
 * one the spec's own calendar example uses. The `(+hhmm) …` names state a fixed offset
 * without daylight saving time and map to IANA's fixed-offset `Etc/GMT∓h` zones (whose
 * sign is inverted by POSIX convention); the others to the IANA zone of the region, with
 * its daylight saving rules. `Arisona` is spelled as CommuniGate spells it.
 *
 * Dependency-free, so that the command line (preferences checks) may load it.
 */
export const COMMUNIGATE_TIME_ZONES: Readonly<Record<string, string>> = Object.freeze({
  '(+0100) Algeria/Congo': 'Etc/GMT-1',
  '(+0200) Egypt/South Africa': 'Etc/GMT-2',
  '(+0300) Saudi Arabia': 'Etc/GMT-3',
  '(+0400) Oman': 'Etc/GMT-4',
  '(+0500) Pakistan': 'Etc/GMT-5',
  '(+0600) Bangladesh': 'Etc/GMT-6',
  '(+0700) Thailand/Vietnam': 'Etc/GMT-7',
  '(+0800) China/Malaysia': 'Etc/GMT-8',
  '(+0900) Japan/Korea': 'Etc/GMT-9',
  '(+1000) Queensland': 'Etc/GMT-10',
  '(+1100) Micronesia': 'Etc/GMT-11',
  '(+1200) Fiji': 'Etc/GMT-12',
  '(+1300) Tonga/Kiribati': 'Etc/GMT-13',
  '(+1400) Christmas Islands': 'Etc/GMT-14',
  '(-0100) Azores/Cape Verde': 'Etc/GMT+1',
  '(-0200) Fernando de Noronha': 'Etc/GMT+2',
  '(-0300) Argentina/Uruguay': 'Etc/GMT+3',
  '(-0400) Venezuela/Guyana': 'Etc/GMT+4',
  '(-0500) Haiti/Peru': 'Etc/GMT+5',
  '(-0600) Central America': 'Etc/GMT+6',
  '(-0700) Arisona': 'Etc/GMT+7',
  '(-0800) Adamstown': 'Etc/GMT+8',
  '(-0900) Marquesas Islands': 'Etc/GMT+9',
  '(-1000) Hawaii/Tahiti': 'Etc/GMT+10',
  '(-1100) Samoa': 'Etc/GMT+11',
  'Asia/Afghanistan': 'Asia/Kabul',
  'Asia/India': 'Asia/Kolkata',
  'Asia/Iran': 'Asia/Tehran',
  'Asia/Iraq': 'Asia/Baghdad',
  'Asia/Israel': 'Asia/Jerusalem',
  'Asia/Jordan': 'Asia/Amman',
  'Asia/Lebanon': 'Asia/Beirut',
  'Asia/Syria': 'Asia/Damascus',
  'Australia/Adelaide': 'Australia/Adelaide',
  'Australia/East': 'Australia/Sydney',
  'Australia/NorthernTerritory': 'Australia/Darwin',
  'Europe/Central': 'Europe/Berlin',
  'Europe/Eastern': 'Europe/Helsinki',
  'Europe/Moscow': 'Europe/Moscow',
  'Europe/Western': 'Europe/London',
  'GMT (+0000)': 'Etc/GMT',
  Newfoundland: 'America/St_Johns',
  'NewZealand/Auckland': 'Pacific/Auckland',
  'NorthAmerica/Alaska': 'America/Anchorage',
  'NorthAmerica/Atlantic': 'America/Halifax',
  'NorthAmerica/Central': 'America/Chicago',
  'NorthAmerica/Eastern': 'America/New_York',
  'NorthAmerica/Mountain': 'America/Denver',
  'NorthAmerica/Pacific': 'America/Los_Angeles',
  'Russia/Ekaterinburg': 'Asia/Yekaterinburg',
  'Russia/Irkutsk': 'Asia/Irkutsk',
  'Russia/Kamchatka': 'Asia/Kamchatka',
  'Russia/Krasnoyarsk': 'Asia/Krasnoyarsk',
  'Russia/Magadan': 'Asia/Magadan',
  'Russia/Novosibirsk': 'Asia/Novosibirsk',
  'Russia/Vladivostok': 'Asia/Vladivostok',
  'Russia/Yakutsk': 'Asia/Yakutsk',
  'SouthAmerica/Brasil': 'America/Sao_Paulo',
  'SouthAmerica/Chile': 'America/Santiago',
  'SouthAmerica/Paraguay': 'America/Asuncion',
});

/** The IANA zone a CommuniGate zone name stands for; the name itself for any other (IANA names, HostOS). */
export function fromCommuniGateZone(name: string): string {
  return Object.prototype.hasOwnProperty.call(COMMUNIGATE_TIME_ZONES, name) ? COMMUNIGATE_TIME_ZONES[name]! : name;
}

/** Whether the runtime knows this IANA zone. */
function runtimeKnows(name: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: name });
    return true;
  } catch {
    return false;
  }
}

/** True for a TimeZone preference value the server accepts: HostOS, a CommuniGate name, an IANA name the runtime knows. */
export function isAcceptedTimeZone(name: string): boolean {
  if (name === 'HostOS' || Object.prototype.hasOwnProperty.call(COMMUNIGATE_TIME_ZONES, name)) return true;
  // Intl accepts offsets (`+01:00`) and legacy names case-insensitively; a preference names a zone.
  return /^[A-Za-z][A-Za-z0-9_+-]*(?:\/[A-Za-z0-9_+-]+)*$/.test(name) && name.length <= 64 && runtimeKnows(name);
}

/**
 * Every name listKnownValues reports as a tzid: HostOS, CommuniGate's names, then the IANA
 * names of the runtime.
 */
export function knownTimeZoneNames(): string[] {
  return [...new Set(['HostOS', ...Object.keys(COMMUNIGATE_TIME_ZONES), ...Intl.supportedValuesOf('timeZone')])];
}
