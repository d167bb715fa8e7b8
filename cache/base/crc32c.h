/* crc32c.h - CRC32C (Castagnoli), the checksum of every on-disk record: the
 * WAL's header and records, the snapshots' header and records.
 *
 * Reflected polynomial 0x82F63B78, initial value and final xor 0xFFFFFFFF;
 * crc32c(0, "123456789", 9) == 0xE3069283. Chainable: crc32c(crc32c(0, a), b)
 * is the CRC of a then b. Uses the SSE4.2 instruction when the CPU has it
 * (decided once, at the first call); the portable slicing-by-8 version is
 * exported so that tests can compare the two.
 *
 * Threads: any thread; the tables are built once under pthread_once.
 */
#ifndef PARROT_CRC32C_H
#define PARROT_CRC32C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

uint32_t crc32c(uint32_t crc, const void *buf, size_t len);
uint32_t crc32c_portable(uint32_t crc, const void *buf, size_t len);
bool crc32c_hw(void); /* whether crc32c() uses the CPU instruction */

#endif
