#include "guest.h"
const char guest_name[] = "uart";
int main(void) { return 1; }
