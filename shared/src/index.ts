export * from './codes.js';
export * from './client-messages.js';
export * from './server-messages.js';
export * from './decode.js';
