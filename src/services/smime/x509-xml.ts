/** The XIMSS presentation of a certificate: the `x509` element (spec "Secure Messaging", SMIMESignature and certificate). */
import { X509Certificate } from 'node:crypto';
import { XmlElement, xmlSafe } from '../../xml/element.js';
import { formatUtc } from '../../xml/time.js';

const NAME_PARTS: Record<string, string> = { CN: 'cn', emailAddress: 'contact', C: 'c', ST: 'st', L: 'l', O: 'o', OU: 'ou' };

function nameElement(tag: string, name: string): XmlElement {
  const element = new XmlElement(tag);
  const parts: [string, string][] = [];
  for (const line of name.split('\n')) {
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    const key = NAME_PARTS[line.slice(0, eq)];
    if (key) parts.push([key, line.slice(eq + 1)]);
  }
  parts.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  for (const [key, value] of parts) element.add(key, undefined, xmlSafe(value));
  return element;
}

export function x509Element(certPem: string, validationError?: string): XmlElement {
  const cert = new X509Certificate(certPem);
  const email = /(?:^|\n)emailAddress=([^\n]*)/.exec(cert.subject)?.[1] ?? /email:([^,\s]+)/i.exec(cert.subjectAltName ?? '')?.[1];
  const cn = /(?:^|\n)CN=([^\n]*)/.exec(cert.subject)?.[1];
  const element = new XmlElement('x509', {
    subject: xmlSafe(email ?? cn ?? ''),
    ...(validationError !== undefined ? { validationError: xmlSafe(validationError) } : {}),
    version: 2,
    serialNumber: cert.serialNumber,
  });
  element.append(nameElement('subject', cert.subject), nameElement('issuer', cert.issuer));
  element.add('validFrom', undefined, formatUtc(new Date(cert.validFrom)));
  element.add('validTill', undefined, formatUtc(new Date(cert.validTo)));
  return element;
}
