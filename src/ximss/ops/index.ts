import type { Engine } from '../engine.js';
import { calendarOperations } from './calendar.js';
import { contactOperations } from './contacts.js';
import { fileOperations } from './files.js';
import { accountOperations } from './account.js';
import { datasetOperations } from './datasets.js';
import { directoryOperations } from './directory.js';
import { folderOperations } from './folder.js';
import { imOperations } from './im.js';
import { loginOperations } from './login.js';
import { mailboxOperations } from './mailbox.js';
import { messageOperations } from './message.js';
import { messageSendOperations } from './message-send.js';
import { notImplementedOperations } from './not-implemented.js';
import { preferenceOperations } from './preferences.js';
import { preLoginOperations } from './prelogin.js';
import { ruleOperations } from './rules.js';
import { serviceOperations } from './service.js';
import { signalOperations } from './signal.js';
import { spellerOperations } from './speller.js';
import { taskOperations } from './tasks.js';

/** Registers every operation module with the engine: one table per spec section. */
export function registerOperations(engine: Engine): void {
  engine.register(preLoginOperations);
  engine.register(loginOperations);
  engine.register(serviceOperations);
  engine.register(mailboxOperations);
  engine.register(folderOperations);
  engine.register(messageOperations);
  engine.register(messageSendOperations);
  engine.register(ruleOperations);
  engine.register(datasetOperations);
  engine.register(preferenceOperations);
  engine.register(fileOperations);
  engine.register(calendarOperations);
  engine.register(contactOperations);
  engine.register(accountOperations);
  engine.register(directoryOperations);
  engine.register(imOperations);
  engine.register(signalOperations);
  engine.register(taskOperations);
  engine.register(spellerOperations);
  engine.register(notImplementedOperations);
}
